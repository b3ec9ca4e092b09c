"""The story composed in I420 (the encoder's format) against the same story composed in RGB:
the decoded MP4s agree within a few levels, captions and the logo land with their colour
where their brightness is, fades go to video black and slides keep the planes aligned."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fanslymotion import compositor, overlay, resample, video, ycbcr
from fanslymotion.story import Story, StoryShot, Transition, Watermark
from tests.storytools import repeat, still

SIZE = (320, 180)
FPS = 24
RED, BLUE = (230, 30, 40), (30, 90, 230)


def _logo() -> bytes:
    """A red disc and a half-transparent blue bar on a transparent PNG."""
    image = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((4, 4, 76, 76), fill=(*RED, 255))
    draw.rectangle((60, 20, 116, 60), fill=(*BLUE, 200))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _write(story: Story, shots: list[np.ndarray], path: Path, *, i420: bool) -> None:
    line = story.timeline(FPS)

    def open_shot(i: int) -> object:
        return repeat(shots[i], line.shot_frames[i])

    compositor.write(story, open_shot, path, size=SIZE, fps=FPS, crf=10, i420=i420)  # type: ignore[arg-type]


def _planes(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each frame's coded Y, Cb and Cr planes, as floats."""
    command = [video.ffmpeg_exe(), "-v", "error", "-i", str(path)]
    command += ["-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"]
    data = subprocess.run(command, check=True, capture_output=True).stdout
    width, height = SIZE
    frames = np.frombuffer(data, np.uint8).reshape(-1, height * 3 // 2, width)
    return [tuple(p.astype(np.float32) for p in ycbcr.planes(f)) for f in frames]  # type: ignore[misc]


def test_the_i420_story_is_the_rgb_story(tmp_path: Path) -> None:
    """Crossfade, fade, slide, two captions (Latin, Cyrillic), a PNG logo at 0.75 and a look
    given to every frame: the I420 composition decodes to the RGB one's frames."""
    story = Story(
        (
            StoryShot(2.0, caption="Morning light over the bay"),
            StoryShot(2.0),
            StoryShot(2.0, caption="Кофе перед дорогой"),
            StoryShot(2.0),
        ),
        (Transition("crossfade", 11 / FPS), Transition("fade", 0.5), Transition("slide", 11 / FPS)),
        look="warm",
        watermark=Watermark(png=_logo(), corner="top_left", opacity=0.75),
    )
    shots = [still(n, SIZE) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    _write(story, shots, tmp_path / "yuv.mp4", i420=True)
    _write(story, shots, tmp_path / "rgb.mp4", i420=False)
    yuv = np.stack(list(video.read_frames(tmp_path / "yuv.mp4"))).astype(np.float32)
    rgb = np.stack(list(video.read_frames(tmp_path / "rgb.mp4"))).astype(np.float32)
    line = story.timeline(FPS)
    assert len(yuv) == len(rgb) == line.frames
    # A slide's luma moves by an even number of pixels in I420; where RGB's shift is odd the
    # two differ by a pixel's move, so those frames are compared where the shifts agree.
    start, k = line.starts()[3], line.overlaps[2]
    odd = {start + j for j in range(k) if round(compositor.weight(j, k) * SIZE[0]) % 2}
    assert 0 < len(odd) < k
    same = [i for i in range(line.frames) if i not in odd]
    difference = np.abs(yuv[same] - rgb[same])
    # Measured: mean 1.0, 99th percentile 5 levels (4:2:0 chroma at the photos' colour
    # edges: ours an area mean, ffmpeg's its own filter; each path is 2.3-2.4 levels from
    # the looked photo itself).
    assert difference.mean() < 1.5, difference.mean()
    assert np.percentile(difference, 99) <= 7, np.percentile(difference, 99)
    for i in same:  # no frame off on its own (a transition's frame, a caption's fade)
        assert difference[same.index(i)].mean() < 2.5, i


def test_caption_and_logo_colour_lands_where_their_luma_does(tmp_path: Path) -> None:
    grey = np.full((SIZE[1], SIZE[0], 3), 128, np.uint8)
    plain = Story((StoryShot(2.0),))
    story = Story(
        (StoryShot(2.0, caption="Чёрным по белому"),),
        watermark=Watermark(png=_logo(), corner="top_left", opacity=0.75),
    )
    _write(plain, [grey], tmp_path / "plain.mp4", i420=True)
    _write(story, [grey], tmp_path / "marked.mp4", i420=True)
    y0, cb0, cr0 = _planes(tmp_path / "plain.mp4")[24]
    y, cb, cr = _planes(tmp_path / "marked.mp4")[24]
    luma = np.abs(y - y0) > 12
    colour = (np.abs(cb - cb0) > 12) | (np.abs(cr - cr0) > 12)
    assert luma.sum() > 500 and colour.sum() > 40  # the logo is 16 pixels high here
    # The caption is white on black: light and dark, no colour in its band.
    band = slice(int(SIZE[1] * 0.55) // 2, None)
    assert luma[int(SIZE[1] * 0.55) :].sum() > 300
    assert colour[band].sum() == 0
    # The logo's colour sits on the logo's pixels: each coloured chroma sample covers a 2x2
    # block with changed luma (or next to one, for x264's ringing at the edge), and the two
    # outlines have the same bounds within a pixel.
    blocks = luma.reshape(SIZE[1] // 2, 2, SIZE[0] // 2, 2).any(axis=(1, 3))
    near = blocks.copy()
    for axis in (0, 1):
        near |= np.roll(blocks, 1, axis) | np.roll(blocks, -1, axis)
    assert not (colour & ~near).any()
    rows, cols = np.nonzero(colour)
    logo_rows, logo_cols = np.nonzero(luma[: SIZE[1] // 2])
    assert abs(rows.min() * 2 - logo_rows.min()) <= 2 and abs(rows.max() * 2 - logo_rows.max()) <= 3
    assert abs(cols.min() * 2 - logo_cols.min()) <= 2 and abs(cols.max() * 2 - logo_cols.max()) <= 3
    # Inside the red disc: the grey frame's colour 3/4 of the way to red's.
    patch = overlay.watermark("", _logo(), "top_left", SIZE)
    centre = (patch.y + patch.alpha.shape[0] // 2, patch.x + patch.alpha.shape[0] // 2)
    red = ycbcr.colours(np.array([[RED]], np.float32))[0, 0]
    expected = 128 + 0.75 * (red - 128)
    got = (y[centre], cb[centre[0] // 2, centre[1] // 2], cr[centre[0] // 2, centre[1] // 2])
    assert np.abs(np.array(got) - expected).max() < 3, (got, expected)


def test_conversions_fades_and_slides_on_i420_planes() -> None:
    rgb = still("astronaut", SIZE)
    frame = ycbcr.from_rgb(rgb)
    # The cheap conversion is the float one (the resampler's) within a level of rounding.
    assert np.abs(frame.astype(int) - resample.to_i420(rgb)).max() <= 1
    black = ycbcr.from_rgb(np.zeros_like(rgb))
    assert (ycbcr.planes(black)[0] == 16).all() and (black[SIZE[1] :] == 128).all()
    # Fading is affine: half-way it is the half-dark RGB frame's I420, at 0 video black.
    assert np.array_equal(compositor.darker(frame, 0.0), black)
    half = compositor.darker(frame, 0.5)
    expected = ycbcr.from_rgb(compositor.darker(rgb, 0.5))
    assert np.abs(half.astype(int) - expected).max() <= 1
    # A slide at an odd share of the width: the luma moves by an even shift, chroma by half.
    other = ycbcr.from_rgb(np.full_like(rgb, 255))
    out = compositor.blend("slide", frame, other, 0.3)
    shift = 2 * round(0.3 * SIZE[0] / 2)
    luma, cb, _ = ycbcr.planes(out)
    assert np.array_equal(luma[:, : SIZE[0] - shift], ycbcr.planes(frame)[0][:, shift:])
    assert (luma[:, SIZE[0] - shift :] == 235).all()
    assert np.array_equal(cb[:, : (SIZE[0] - shift) // 2], ycbcr.planes(frame)[1][:, shift // 2 :])
    assert (cb[:, (SIZE[0] - shift) // 2 :] == 128).all()
    # A caption converted once, blended in I420, is the RGB blend converted, to rounding.
    patch = overlay.caption("Morning light, утро", SIZE)
    assert patch is not None and patch.x % 2 + patch.y % 2 > 0  # the odd placement is padded
    ours = patch.i420().blend(ycbcr.from_rgb(rgb), 0.6)
    theirs = ycbcr.from_rgb(patch.blend(rgb.copy(), 0.6))
    apart = np.abs(ours.astype(int) - theirs)  # each side rounds to 8 bits once or twice
    assert apart.max() <= 3 and apart.mean() < 0.05, (apart.max(), apart.mean())
