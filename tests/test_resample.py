"""The compiled YUV resampler (`resample`, `motion.render_path_yuv`): Pillow's geometry, the
same sub-pixel precision on the luma plane, the encoder's colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fanslymotion import motion, resample, video
from fanslymotion.errors import InvalidParams

from .imagetools import textured_photo
from .test_motion import OUT, path_errors


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return textured_photo(1200, 800, seed=1, scale=1.5)


def test_a_plane_is_pillows_resize_without_its_8_bit_intermediate(photo: Image.Image) -> None:
    grey = photo.convert("L")
    plane = np.asarray(grey, dtype=np.float32)
    for box in (
        (10.3, 20.7, 810.9, 470.4),
        (0.0, 0.0, 1200.0, 675.0),
        (401.25, 300.5, 561.25, 390.5),
    ):
        ours = resample.plane(plane, box, (320, 180)).astype(int)
        pillow = np.asarray(grey.resize((320, 180), Image.Resampling.BICUBIC, box=box))
        assert np.abs(ours - pillow).max() <= 1
        assert np.abs(ours - pillow).mean() < 0.3


@pytest.mark.parametrize("scale", [0.6, 1.0, 1.3, 1.45, 1.7, 1.95, 2.4])
def test_every_sweep_is_pillows_resize(photo: Image.Image, scale: float) -> None:
    """Shrinks of 5 to 11 taps: six or eight taps go through the fused sweep and store, the
    rest through a float row; both give Pillow's picture, from a fixed-point plane too."""
    grey = photo.convert("L")
    box = (3.7, 5.2, 3.7 + 320 * scale, 5.2 + 180 * scale)
    pillow = np.asarray(grey.resize((320, 180), Image.Resampling.BICUBIC, box=box))
    floats = np.asarray(grey, dtype=np.float32)
    fixed = np.round(floats * resample.FIXED).astype(np.int16)
    for plane in (floats, fixed):
        ours = resample.plane(plane, box, (320, 180)).astype(int)
        assert np.abs(ours - pillow).max() <= 1
        assert np.abs(ours - pillow).mean() < 0.3


def test_compiled_rgb_frames_are_pillows(photo: Image.Image) -> None:
    """A story's shots (`render_path(..., compiled=True)`): the same frames as Pillow's, to
    within a level, channel by channel."""
    path = motion.CameraPath("dolly_in", 0.7, photo.size, (320, 180), seed=4)
    ours = list(motion.render_path(photo, path, 6, compiled=True))
    pillow = list(motion.render_path(photo, path, 6))
    for a, b in zip(ours, pillow, strict=True):
        assert a.shape == b.shape == (180, 320, 3)
        difference = np.abs(a.astype(int) - b)
        assert difference.max() <= 1 and difference.mean() < 0.3, difference.mean()


@pytest.mark.parametrize("preset", motion.PRESETS)
def test_yuv_frames_follow_the_ideal_path_to_a_hundredth_of_a_pixel(
    photo: Image.Image, preset: str
) -> None:
    path = motion.CameraPath(preset, 0.5, photo.size, OUT)
    frames = list(motion.render_path_yuv(photo, path, 16))
    assert all(f.shape == (270, 320) and f.dtype == np.uint8 for f in frames)
    errors = np.array(path_errors([f[:180] for f in frames], path, OUT))
    # Pillow's frames of the same path, measured on the same luma: the instrument reads them
    # at 0.009-0.014 px worst on such textures, so the worst case is held to about that
    # floor, and the RMS to Pillow's own.
    pillow = [resample.to_i420(f)[:180] for f in motion.render_path(photo, path, 16)]
    reference = np.array(path_errors(pillow, path, OUT))
    assert errors.max() <= 0.0105, f"worst {errors.max():.4f} px"
    rms, reference_rms = np.sqrt(np.mean(errors**2)), np.sqrt(np.mean(reference**2))
    assert rms <= reference_rms * 1.05, (rms, reference_rms)


def test_yuv_frames_encode_to_the_colours_of_the_rgb_ones(
    photo: Image.Image, tmp_path: Path
) -> None:
    # Flat colour fields and the texture: the same clip through both paths, decoded as RGB.
    pixels = np.asarray(photo).copy()
    pixels[:400, :500] = (200, 40, 30)
    pixels[:200, 500:800] = (30, 160, 60)
    pixels[600:, :600] = (20, 40, 210)
    image = Image.fromarray(pixels)
    path = motion.CameraPath("pan_r", 0.5, image.size, OUT)
    rgb_file, yuv_file = tmp_path / "rgb.mp4", tmp_path / "yuv.mp4"
    video.encode(motion.render_path(image, path, 8), rgb_file, width=320, height=180, fps=24)
    video.encode(
        motion.render_path_yuv(image, path, 8),
        yuv_file,
        width=320,
        height=180,
        fps=24,
        pix_fmt="yuv420p",
    )
    info = video.probe(yuv_file)
    assert (info.frames, info.width, info.height, info.pix_fmt) == (8, 320, 180, "yuv420p")
    a = np.stack(list(video.read_frames(rgb_file))).astype(int)
    b = np.stack(list(video.read_frames(yuv_file))).astype(int)
    assert a.shape == b.shape == (8, 180, 320, 3)
    # Alike, but not equal: ffmpeg and we subsample the chroma of the texture differently.
    assert np.abs(a - b).mean() < 3
    # The flat red field keeps its colour (within a few levels, away from its edges).
    x0, y0, x1, _ = path.box(0.0)
    s = (x1 - x0) / 320  # photo px per frame px
    left, top = int((100 - x0) / s) + 1, int((150 - y0) / s) + 1  # inside the red field
    right, bottom = int((400 - x0) / s), int((350 - y0) / s)
    assert right - left > 10 and bottom - top > 10
    red = b[0, top:bottom, left:right].reshape(-1, 3).mean(axis=0)
    assert np.abs(red - (200, 40, 30)).max() < 4, red


def test_yuv_frames_need_even_sizes(photo: Image.Image) -> None:
    path = motion.CameraPath("micro", 0.5, photo.size, (321, 181))
    with pytest.raises(InvalidParams, match="even"):
        motion.render_path_yuv(photo, path, 4)
    with pytest.raises(ValueError, match="pix_fmt"):
        video.encode([], Path("x.mp4"), width=2, height=2, fps=24, pix_fmt="nv12")


def test_rolled_yuv_frames_follow_the_rolled_window(photo: Image.Image) -> None:
    from .test_camera import rolled_errors

    path = motion.CameraPath("micro", 0.5, photo.size, OUT, seed=11, roll=True)
    frames = [f[:180] for f in motion.render_path_yuv(photo, path, 16)]
    again = [f[:180] for f in motion.render_path_yuv(photo, path, 16, threads=0)]
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    # The compiled roll (`affine`) holds the rolled Pillow frames' bound, and the upright
    # model does not describe its frames.
    errors = rolled_errors(frames, path, OUT)
    assert max(errors) <= 0.02, max(errors)
    assert max(path_errors(frames, path, OUT)) > 0.1
    # The same picture as the rolled Pillow frames (RGB, rotated by OpenCV), to within the
    # resamplers' difference (the upright frames of the path differ by ~1.9 levels on average).
    pillow = [resample.to_i420(f)[:180] for f in motion.render_path(photo, path, 16)]
    for ours, theirs in zip(frames[::5], pillow[::5], strict=True):
        difference = np.abs(ours.astype(int) - theirs)
        assert difference.mean() < 0.6 and difference.max() <= 4, difference.mean()
