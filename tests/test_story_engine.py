"""The story engine on real output: timeline maths, transitions, captions, watermark, looks
and music, each checked by decoding the MP4 it wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fanslymotion import compositor, looks, motion, music, video
from fanslymotion.errors import BadRequest, InvalidParams, PayloadTooLarge
from fanslymotion.story import (
    Story,
    StoryShot,
    Transition,
    Watermark,
    check_story,
    parse_story,
)
from tests.storytools import repeat, still, transcode, tune, write_wav

SIZE = (320, 180)
FPS = 24


def _stills(names: list[str]) -> list[np.ndarray]:
    return [still(n, SIZE) for n in names]


def _write(story: Story, frames: list[np.ndarray], path: Path, **kw: object) -> video.VideoInfo:
    line = story.timeline(FPS)

    def open_shot(i: int) -> object:
        return repeat(frames[i], line.shot_frames[i])

    compositor.write(story, open_shot, path, size=SIZE, fps=FPS, crf=12, **kw)  # type: ignore[arg-type]
    return video.probe(path)


def _decoded(path: Path) -> list[np.ndarray]:
    return [f.astype(np.float32) for f in video.read_frames(path)]


def test_timeline_adds_up_exactly() -> None:
    story = Story(
        (StoryShot(3.0), StoryShot(2.5), StoryShot(4.0)),
        (Transition("crossfade", 0.5), Transition("fade", 0.5)),
    )
    line = story.timeline(FPS)
    assert line.shot_frames == (72, 60, 96)
    assert line.overlaps == (12, 13)  # a fade's frames are odd: its middle frame is black
    assert line.frames == 72 + 60 + 96 - 12 - 13
    assert line.starts() == (0, 60, 107)
    assert line.shot_at(59) == 0 and line.shot_at(60) == 1 and line.shot_at(107) == 2


def test_parse_story_names_the_shot_and_field() -> None:
    good = {"shots": [{"duration": 3}, {"duration": 4, "caption": "Привет, мир"}]}
    story = parse_story({**good, "transition": "crossfade", "look": "warm"})
    assert story.transitions == (Transition("crossfade", 0.6),)
    assert story.shots[1].caption == "Привет, мир"
    cases = [
        ({"shots": [{"duration": 3}, {"duration": 40}]}, "shots[1].duration"),
        ({"shots": [{"duration": 3, "caption": "x" * 121}]}, "shots[0].caption"),
        ({"shots": [{"motion_preset": "spin"}]}, "shots[0].motion_preset"),
        ({"shots": [{}, {"transition": {"kind": "slide", "seconds": 3}}]}, "shots[1].transition"),
        ({"shots": [{}], "look": "sepia"}, "story.look"),
        ({"shots": [{"camera": {"keyframes": []}}]}, "shots[0].camera"),
        ({"shots": [{"duration": 12}] * 6}, "60 s"),
        ({"shots": []}, "story.shots"),
    ]
    for body, named in cases:
        with pytest.raises(InvalidParams) as caught:
            parse_story(body)
        assert named in caught.value.message, (body, caught.value.message)
    short = Story((StoryShot(2.0), StoryShot(2.0), StoryShot(2.0)), (Transition("slide", 1.5),) * 2)
    with pytest.raises(InvalidParams, match=r"shots\[1\]\.duration"):
        check_story(short)
    assert Story.from_json(story.to_json()) == story


def test_crossfade_fade_and_slide_on_real_output(tmp_path: Path) -> None:
    a, b, c, d = _stills(["astronaut", "coffee", "chelsea", "rocket"])
    story = Story(
        (StoryShot(2.0), StoryShot(2.0), StoryShot(2.0), StoryShot(2.0)),
        (Transition("crossfade", 11 / FPS), Transition("fade", 0.5), Transition("slide", 11 / FPS)),
    )
    line = story.timeline(FPS)
    info = _write(story, [a, b, c, d], tmp_path / "t.mp4")
    assert info.frames == line.frames == 4 * 48 - 11 - 13 - 11
    assert abs(info.duration - line.frames / FPS) < 1 / FPS
    frames = _decoded(tmp_path / "t.mp4")
    assert len(frames) == line.frames
    starts = line.starts()

    # crossfade: 11 frames from 37; the middle one (p = 0.5) is the mean of its sources.
    middle = frames[starts[1] + 5]
    mean = (a.astype(np.float32) + b.astype(np.float32)) / 2
    assert np.abs(middle - mean).mean() < 3.0
    assert np.abs(middle - a).mean() > 20 and np.abs(middle - b).mean() > 20
    # Before and after it, the shots themselves.
    assert np.abs(frames[starts[1] - 1] - a).mean() < 3.0
    assert np.abs(frames[starts[1] + 11] - b).mean() < 3.0

    # fade through black: darker and darker to an all-black middle frame, then c rises.
    fade = [frames[starts[2] + j].mean() for j in range(13)]
    assert fade[6] < 2.0
    assert all(fade[j] > fade[j + 1] for j in range(6))
    assert all(fade[j] < fade[j + 1] for j in range(6, 12))

    # slide: d enters from the right and pushes c out to the left.
    j = 5
    shift = round((j + 1) / 12 * SIZE[0])
    frame = frames[starts[3] + j]
    left, right = frame[:, : SIZE[0] - shift], frame[:, SIZE[0] - shift :]
    assert np.abs(left - c[:, shift:]).mean() < 4.0
    assert np.abs(right - d[:, :shift]).mean() < 4.0
    # The other way round would not match.
    assert np.abs(frame[:, shift:] - c[:, : SIZE[0] - shift]).mean() > 15.0


def test_captions_show_in_their_band_only_during_their_shot(tmp_path: Path) -> None:
    shots = _stills(["coffee", "chelsea", "rocket"])
    plain = Story((StoryShot(2.0), StoryShot(2.0), StoryShot(2.0)))
    captioned = Story(
        (
            StoryShot(2.0, caption="Morning coffee, Latin"),
            StoryShot(2.0),
            StoryShot(2.0, caption="Кошка Челси: кириллица и длинная подпись переносится"),
        )
    )
    _write(plain, shots, tmp_path / "plain.mp4")
    _write(captioned, shots, tmp_path / "cap.mp4")
    without, with_ = _decoded(tmp_path / "plain.mp4"), _decoded(tmp_path / "cap.mp4")
    height = SIZE[1]
    band_top = int(height * 0.55)
    band_bottom = int(height * 0.93)
    for i, (p, c) in enumerate(zip(without, with_, strict=True)):
        diff = np.abs(p - c).max(axis=2)
        shot = i // 48
        outside = np.concatenate([diff[:band_top], diff[band_bottom:]]).max()
        assert outside < 30, (i, outside)  # nothing drawn outside the lower safe area
        band = diff[band_top:band_bottom]
        edge = min(i % 48, 47 - i % 48)
        if shot == 1:
            assert (band > 40).sum() == 0, i
        elif edge >= 9:  # fully faded in
            assert (band > 100).sum() > 150, (i, (band > 100).sum())
    # The Cyrillic caption wraps onto more lines: its band is taller.
    rows_latin = (np.abs(without[24] - with_[24]).max(axis=2) > 100).any(axis=1).nonzero()[0]
    rows_cyr = (np.abs(without[120] - with_[120]).max(axis=2) > 100).any(axis=1).nonzero()[0]
    assert np.ptp(rows_cyr) > np.ptp(rows_latin) * 1.5


def test_watermark_in_its_corner_and_looks(tmp_path: Path) -> None:
    shot = _stills(["astronaut"])
    mark = Watermark(text="@fansly", corner="top_right", opacity=1.0)
    _write(Story((StoryShot(2.0),)), shot, tmp_path / "p.mp4")
    _write(Story((StoryShot(2.0),), look="mono", watermark=mark), shot, tmp_path / "m.mp4")
    plain, marked = _decoded(tmp_path / "p.mp4")[10], _decoded(tmp_path / "m.mp4")[10]
    # mono: no colour left, except where the white-on-black mark is drawn.
    chroma = np.abs(marked[..., 0] - marked[..., 2])
    assert chroma[40:].mean() < 2.0 and np.abs(plain[..., 0] - plain[..., 2]).mean() > 20
    corner = marked[:30, SIZE[0] // 2 :]
    assert (corner > 235).all(axis=2).sum() > 30  # white letters in the top right
    assert (marked[:30, : SIZE[0] // 3] > 235).all(axis=2).sum() < 5
    frame = shot[0]
    for name in looks.LOOK_SPECS:
        out = looks.apply(frame, name)
        assert out.shape == frame.shape and out.dtype == np.uint8
    warm, cool = looks.apply(frame, "warm"), looks.apply(frame, "cool")
    assert (
        warm[..., 0].mean() - warm[..., 2].mean() > cool[..., 0].mean() - cool[..., 2].mean() + 10
    )


def test_music_is_cut_normalised_and_muxed(tmp_path: Path) -> None:
    source = write_wav(tmp_path / "tune.wav", tune(9.0, level=0.03))
    mp3 = transcode(source, tmp_path / "tune.mp3", "-c:a", "libmp3lame", "-b:a", "128k")
    story = Story((StoryShot(3.0), StoryShot(3.0)), (Transition("crossfade", 0.5),))
    seconds = story.timeline(FPS).seconds
    track = music.prepare(mp3, 1.0, seconds)
    out = tmp_path / "m.mp4"
    info = _write(story, _stills(["coffee", "rocket"]), out, music=track)
    assert info.frames == story.timeline(FPS).frames
    assert abs(music.audio_seconds(out) - info.frames / FPS) <= 1 / FPS
    assert abs(music.integrated_loudness(out) - music.TARGET_LUFS) <= 1.0
    # A tune shorter than the video is padded with silence to the video's length.
    short = write_wav(tmp_path / "short.wav", tune(3.0, level=0.3))
    track = music.prepare(short, 0.0, seconds)
    _write(story, _stills(["coffee", "rocket"]), out, music=track)
    assert abs(music.audio_seconds(out) - info.frames / FPS) <= 1 / FPS


def test_bad_audio_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"ID3 this is not audio at all" * 100)
    with pytest.raises(BadRequest, match="MP3, AAC/M4A, WAV, OGG/Opus or FLAC"):
        music.check(junk)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(44_100 * 3))
    with pytest.raises(InvalidParams) as caught:
        music.check(silent)
    assert caught.value.code == "audio_silent"
    big = tmp_path / "big.wav"
    with big.open("wb") as out:
        out.truncate(music.MAX_AUDIO_BYTES + 1)
    with pytest.raises(PayloadTooLarge, match="at most 20 MB"):
        music.check(big)
    long = write_wav(tmp_path / "long.wav", np.zeros(601 * 8000), rate=8000)
    with pytest.raises(InvalidParams, match="at most 10 min"):
        music.check(long)
    tune_wav = write_wav(tmp_path / "t.wav", tune(2.0))
    with pytest.raises(InvalidParams, match="music_start"):
        music.check(tune_wav, start=5.0)


@pytest.mark.parametrize("name", sorted(looks.LOOK_SPECS))
def test_a_look_on_the_photo_is_the_look_on_its_frames(name: str) -> None:
    """A camera-motion shot takes the look on its photo, once (story_render): the frames are
    those of the look applied to every frame, but for rounding and clipping at sharp edges."""
    from .test_camera import astronaut

    picture = Image.fromarray(astronaut())
    path = motion.CameraPath("dolly_in", 0.6, picture.size, (320, 180), seed=2)
    per_frame = [looks.apply(f, name) for f in motion.render_path(picture, path, 4, compiled=True)]
    looked = looks.apply_image(picture, name)
    once = list(motion.render_path(looked, path, 4, compiled=True))
    # One pixel in a hundred may differ by a few levels: where the bicubic filter overshoots
    # at a sharp edge, the table and the clipping meet other values (measured on the
    # astronaut: at most 21 levels on vivid's clipped reds, on a few pixels).
    difference = np.abs(np.stack(once).astype(int) - np.stack(per_frame))
    assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 3, difference.mean()
