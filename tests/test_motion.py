"""Camera paths and the frame renderer: sizes, directions, bounds, sub-pixel precision.

Precision is measured, not assumed: `imagetools.measure` finds how far the content of a patch
moved between two frames (to ~0.002 px, see `test_estimator_is_exact`) and the point that
estimate refers to; `box_displacement` says how far the ideal path (CameraPath.box) moved the
content at that point. The engine's own frames must agree to 0.01 px on every frame pair.
"""

from __future__ import annotations

import itertools
import math
import os
import threading

import numpy as np
import pytest
from PIL import Image

from fanslymotion import motion, reframe
from fanslymotion.errors import InvalidParams

from .imagetools import (
    box_displacement,
    displacement,
    patch_motion,
    texture,
    textured_photo,
)

OUT = (320, 180)
CENTRES = [(80, 60), (240, 60), (160, 90), (80, 120), (240, 120)]
PATCH = 96


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return textured_photo(1200, 800, seed=1, scale=1.5)


def path_errors(
    frames: list[np.ndarray], path: motion.CameraPath, out: tuple[int, int]
) -> list[float]:
    """Per patch and frame pair: |measured motion - ideal motion| in output px."""
    boxes = list(path.boxes(len(frames)))
    errors = []
    for i in range(1, len(frames)):
        for dx, dy, px, py in patch_motion(frames[i - 1], frames[i], CENTRES, PATCH):
            ex, ey = box_displacement(boxes[i - 1], boxes[i], out, (px, py))
            errors.append(math.hypot(dx - ex, dy - ey))
    return errors


# --- constants and sizes --------------------------------------------------------------------


def test_constants() -> None:
    assert motion.PRESETS == ("micro", "pan_l", "pan_r", "tilt_up", "tilt_down", "dolly_in")
    assert motion.RESOLUTIONS == {"360p": 360, "480p": 480, "720p": 720, "1080p": 1080}
    assert motion.ASPECTS == ("auto", "16:9", "9:16", "1:1", "4:3", "3:4")
    assert motion.DURATIONS == (3, 6, 8, 10, 12)


@pytest.mark.parametrize(
    ("resolution", "aspect", "size"),
    [
        ("720p", "16:9", (1280, 720)),
        ("720p", "9:16", (720, 1280)),
        ("1080p", "16:9", (1920, 1080)),
        ("1080p", "9:16", (1080, 1920)),
        ("360p", "16:9", (640, 360)),
        ("480p", "16:9", (854, 480)),
        ("720p", "4:3", (960, 720)),
        ("720p", "3:4", (720, 960)),
        ("480p", "1:1", (480, 480)),
        ("360p", "4:3", (480, 360)),
    ],
)
def test_output_size(resolution: str, aspect: str, size: tuple[int, int]) -> None:
    assert motion.output_size(resolution, aspect, 3000, 2000) == size


def test_output_sizes_are_even() -> None:
    for resolution, aspect in itertools.product(motion.RESOLUTIONS, motion.ASPECTS):
        for photo_size in ((3000, 2000), (2000, 3000), (1000, 1000), (4000, 900)):
            width, height = motion.output_size(resolution, aspect, *photo_size)
            assert width % 2 == 0 and height % 2 == 0
            assert min(width, height) == motion.RESOLUTIONS[resolution]


@pytest.mark.parametrize(
    ("photo_size", "expected"),
    [
        ((3000, 2000), "16:9"),
        ((2000, 3000), "9:16"),
        ((1000, 1000), "1:1"),
        ((1100, 1000), "1:1"),
        ((1000, 1100), "1:1"),
        ((1200, 1000), "16:9"),
        ((1000, 1200), "9:16"),
        ((8000, 1000), "16:9"),
    ],
)
def test_auto_aspect(photo_size: tuple[int, int], expected: str) -> None:
    assert motion.resolve_aspect("auto", *photo_size) == expected
    assert motion.resolve_aspect("4:3", *photo_size) == "4:3"


@pytest.mark.parametrize(
    "call",
    [
        lambda: motion.output_size("4k", "16:9", 100, 100),
        lambda: motion.output_size("720p", "2:1", 100, 100),
        lambda: motion.resolve_aspect("auto", 0, 100),
        lambda: motion.camera_window("zoom", 0.5, 0.5),
        lambda: motion.camera_window("pan_l", 1.5, 0.5),
        lambda: motion.camera_window("pan_l", 0.5, -0.1),
        lambda: motion.camera_window("pan_l", 0.5, 1.01),
        lambda: motion.camera_window("pan_l", 0.5, float("nan")),
        lambda: motion.CameraPath("pan_l", 0.5, (0, 100), (320, 180)),
        lambda: motion.CameraPath("pan_l", 0.5, (100, 100), (320.5, 180)),  # type: ignore[arg-type]
        lambda: motion.CameraPath("pan_l", 0.5, (100, 100), (320, 180)).box(-0.1),
        lambda: motion.motion_frames(
            Image.new("RGB", (64, 64)), out_size=(32, 32), n_frames=0, preset="micro", strength=0
        ),
        lambda: motion.motion_frames(
            "photo.jpg",  # type: ignore[arg-type]
            out_size=(32, 32),
            n_frames=2,
            preset="micro",
            strength=0,
        ),
        lambda: reframe.apply_camera([], out_size=(32, 32), n_frames=2, preset="up", strength=0),
    ],
)
def test_invalid_arguments(call: object) -> None:
    with pytest.raises(InvalidParams) as info:
        call()  # type: ignore[operator]
    assert info.value.message and info.value.status == 422


# --- the normalised paths ---------------------------------------------------------------------


def test_directions_of_the_normalised_paths() -> None:
    start = {p: motion.camera_window(p, 0.0, 0.5) for p in motion.PRESETS}
    end = {p: motion.camera_window(p, 1.0, 0.5) for p in motion.PRESETS}
    # The window moves the way the camera turns; the content then slides the other way.
    assert end["pan_l"].cx < start["pan_l"].cx and end["pan_l"].cy == start["pan_l"].cy
    assert end["pan_r"].cx > start["pan_r"].cx
    assert end["tilt_up"].cy < start["tilt_up"].cy and end["tilt_up"].cx == start["tilt_up"].cx
    assert end["tilt_down"].cy > start["tilt_down"].cy
    for preset in ("pan_l", "pan_r", "tilt_up", "tilt_down"):
        assert start[preset].zoom == end[preset].zoom == 1.0
    assert (end["dolly_in"].cx, end["dolly_in"].cy) == (0.0, 0.0)
    assert end["dolly_in"].zoom >= 1.2 * start["dolly_in"].zoom  # a clear zoom
    micro = end["micro"].zoom / start["micro"].zoom
    assert 1.02 <= micro <= 1.08  # a push-in of a few percent
    assert 0 < abs(end["micro"].cx - start["micro"].cx) <= 0.05  # a subtle drift


def test_strength_scales_the_amplitude() -> None:
    for preset in motion.PRESETS:
        still = [motion.camera_window(preset, t, 0.0) for t in (0.0, 0.5, 1.0)]
        assert len(set(still)) == 1 and still[0].zoom == 1.0
        half = motion.camera_window(preset, 1.0, 0.5)
        full = motion.camera_window(preset, 1.0, 1.0)
        half0 = motion.camera_window(preset, 0.0, 0.5)
        full0 = motion.camera_window(preset, 0.0, 1.0)
        assert full.cx - full0.cx == pytest.approx(2 * (half.cx - half0.cx))
        assert full.cy - full0.cy == pytest.approx(2 * (half.cy - half0.cy))
        assert full.zoom - full0.zoom == pytest.approx(2 * (half.zoom - half0.zoom))


def test_ease_in_and_out() -> None:
    for preset in motion.PRESETS:

        def speed(t: float, p: str = preset) -> float:
            a, b = motion.camera_window(p, t, 1.0), motion.camera_window(p, t + 1e-3, 1.0)
            return abs(b.cx - a.cx) + abs(b.cy - a.cy) + abs(b.zoom - a.zoom)

        assert speed(0.0) < 0.02 * speed(0.5)
        assert speed(1.0 - 1e-3) < 0.02 * speed(0.5)


# --- paths fitted to photos -----------------------------------------------------------------

PHOTO_SIZES = [(3000, 2000), (2000, 3000), (1500, 1500), (6000, 1000), (640, 480)]


@pytest.mark.parametrize("photo_size", PHOTO_SIZES)
@pytest.mark.parametrize("aspect", ["16:9", "9:16", "1:1"])
def test_boxes_stay_inside_with_the_output_aspect(photo_size: tuple[int, int], aspect: str) -> None:
    out = motion.output_size("720p", aspect, *photo_size)
    for preset, strength in itertools.product(motion.PRESETS, (0.0, 0.5, 1.0)):
        path = motion.CameraPath(preset, strength, photo_size, out)
        boxes = np.array([path.box(t) for t in np.linspace(0.0, 1.0, 241)])
        x0, y0, x1, y1 = boxes.T
        assert x0.min() >= 0 and y0.min() >= 0
        assert x1.max() <= photo_size[0] and y1.max() <= photo_size[1]
        # Nothing stretched: every box has exactly the output's aspect.
        np.testing.assert_allclose((x1 - x0) / (y1 - y0), out[0] / out[1], rtol=1e-12)
        # The largest the path allows: the movement spans the photo along one axis.
        spans = (x1.max() - x0.min()) / photo_size[0], (y1.max() - y0.min()) / photo_size[1]
        assert max(spans) == pytest.approx(1.0, abs=1e-9)


def test_still_path_is_the_largest_centred_window() -> None:
    path = motion.CameraPath("pan_r", 0.0, (3000, 2000), (1280, 720))
    assert path.box(0.3) == pytest.approx((0.0, 156.25, 3000.0, 1843.75))


def test_pans_cross_the_same_share_of_the_frame_whatever_the_photo() -> None:
    """Motion is defined relative to the frame: a panorama does not make a pan faster."""
    travel = []
    for size in ((3000, 2000), (6000, 1000), (1920, 1080)):
        path = motion.CameraPath("pan_r", 0.5, size, (1280, 720))
        (a, _, a1, _), (b, _, _, _) = path.box(0.0), path.box(1.0)
        travel.append((b - a) / (a1 - a))
    assert travel == pytest.approx([travel[0]] * 3) and travel[0] == pytest.approx(0.15)


# --- rendered frames ------------------------------------------------------------------------


def test_frames_are_lazy_and_well_formed(photo: Image.Image) -> None:
    frames = motion.motion_frames(photo, out_size=OUT, n_frames=500, preset="pan_l", strength=1)
    first = next(frames)  # 500 frames would take seconds; one is immediate
    assert first.shape == (180, 320, 3) and first.dtype == np.uint8
    rest = list(itertools.islice(frames, 3))
    assert len(rest) == 3
    counted = motion.motion_frames(photo, out_size=(64, 36), n_frames=7, preset="micro", strength=1)
    assert sum(1 for _ in counted) == 7


def test_worker_threads_render_the_same_frames_in_order(photo: Image.Image) -> None:
    path = motion.CameraPath("dolly_in", 0.7, photo.size, OUT)
    inline = list(motion.render_path(photo, path, 9, threads=0))
    threaded = list(motion.render_path(photo, path, 9, threads=3))
    assert all(np.array_equal(a, b) for a, b in zip(inline, threaded, strict=True))
    # A consumer that stops early (a cancelled job) leaves no worker behind.
    frames = motion.render_path(photo, path, 200, threads=2)
    next(frames)
    frames.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("motion-frame")]


def test_frame_workers_yield_to_the_encoder(photo: Image.Image) -> None:
    """The workers run below their caller's CPU priority: the encoder the caller feeds is
    the clip's critical path, and they fill its gaps instead of taking its time."""
    path = motion.CameraPath("pan_l", 1.0, photo.size, OUT)
    frames = motion.render_path(photo, path, 30, threads=2)
    next(frames)
    try:
        workers = [t for t in threading.enumerate() if t.name.startswith("motion-frame")]
        assert len(workers) == 2
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        for worker in workers:
            assert worker.native_id is not None
            nice = os.getpriority(os.PRIO_PROCESS, worker.native_id)
            assert nice == min(mine + motion.WORKER_NICENESS, 19)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    finally:
        frames.close()


def test_strength_zero_is_a_still(photo: Image.Image) -> None:
    frames = list(motion.motion_frames(photo, out_size=OUT, n_frames=3, preset="pan_l", strength=0))
    assert np.array_equal(frames[0], frames[2])


def test_estimator_is_exact() -> None:
    """The measuring tool itself: known sub-pixel shifts of a texture, cropped and rounded."""
    rng = np.random.default_rng(5)
    base = texture(256, 256, seed=3, scale=1.5) * 200 + 20
    spectrum = np.fft.fft2(base)
    fy, fx = np.fft.fftfreq(256)[:, None], np.fft.fftfreq(256)[None, :]
    for _ in range(4):
        dx, dy = rng.uniform(-3, 3, 2)
        moved = np.fft.ifft2(spectrum * np.exp(-2j * np.pi * (fx * dx + fy * dy))).real
        a, b = np.round(base[40:136, 30:226]), np.round(moved[40:136, 30:226])
        mx, my = displacement(a, b)
        assert math.hypot(mx - dx, my - dy) < 0.003


@pytest.mark.parametrize("preset", motion.PRESETS)
def test_engine_frames_follow_the_ideal_path_to_a_hundredth_of_a_pixel(
    photo: Image.Image, preset: str
) -> None:
    n = 16
    frames = list(
        motion.motion_frames(photo, out_size=OUT, n_frames=n, preset=preset, strength=0.5)
    )
    path = motion.CameraPath(preset, 0.5, photo.size, OUT)
    errors = path_errors(frames, path, OUT)
    assert max(errors) <= 0.01, f"worst {max(errors):.4f} px"


def test_engine_frames_move_the_named_way(photo: Image.Image) -> None:
    moves = {}
    for preset in motion.PRESETS:
        frames = motion.motion_frames(photo, out_size=OUT, n_frames=9, preset=preset, strength=1)
        middle = list(itertools.islice(frames, 4, 6))
        moves[preset] = displacement(*middle)
    assert moves["pan_l"][0] > 1 and abs(moves["pan_l"][1]) < 0.05  # content slides right
    assert moves["pan_r"][0] < -1
    assert moves["tilt_up"][1] > 1 and abs(moves["tilt_up"][0]) < 0.05  # content slides down
    assert moves["tilt_down"][1] < -1
    assert moves["pan_l"][0] == pytest.approx(-moves["pan_r"][0], abs=0.01)


@pytest.mark.parametrize(
    ("photo_size", "out"),
    [((900, 1600), (180, 320)), ((1000, 1000), (240, 240)), ((4000, 800), (320, 180))],
)
def test_engine_precision_on_other_shapes(
    photo_size: tuple[int, int], out: tuple[int, int]
) -> None:
    image = textured_photo(*photo_size, seed=4, scale=1.5)
    path = motion.CameraPath("micro", 1.0, image.size, out)
    frames = list(motion.render_path(image, path, 8))
    w, h = out
    centres = [(w // 2, h // 2), (w // 3, h // 3), (2 * w // 3, 2 * h // 3)]
    boxes = list(path.boxes(8))
    for i in range(1, 8):
        for dx, dy, px, py in patch_motion(frames[i - 1], frames[i], centres, 96):
            ex, ey = box_displacement(boxes[i - 1], boxes[i], out, (px, py))
            assert math.hypot(dx - ex, dy - ey) <= 0.01


def test_no_borders_ever() -> None:
    """Extreme shapes at full strength: every frame edge shows photo, never padding."""
    for photo_size, aspect in (((4000, 500), "9:16"), ((500, 4000), "16:9"), ((700, 700), "16:9")):
        image = textured_photo(*photo_size, seed=2, scale=3)
        out = motion.output_size("360p", aspect, *photo_size)
        for preset in motion.PRESETS:
            frames = motion.motion_frames(
                image, out_size=out, n_frames=5, preset=preset, strength=1
            )
            for frame in frames:
                for edge in (frame[0], frame[-1], frame[:, 0], frame[:, -1]):
                    # Padding would be a flat run (black, grey or a smeared edge pixel).
                    assert edge.astype(float).std(axis=0).min() > 5
                    runs = np.all(edge[1:] == edge[:-1], axis=1)
                    assert not any(all(w) for w in _windows(runs, 6))


def _windows(values: np.ndarray, size: int) -> list[np.ndarray]:
    return [values[i : i + size] for i in range(len(values) - size + 1)]


def test_small_photo_is_enlarged_without_error() -> None:
    image = textured_photo(200, 120, seed=6, scale=2)
    frames = list(
        motion.motion_frames(image, out_size=(640, 360), n_frames=3, preset="dolly_in", strength=1)
    )
    assert [f.shape for f in frames] == [(360, 640, 3)] * 3


def test_any_mode_is_accepted() -> None:
    image = textured_photo(300, 200, seed=6).convert("L")
    frame = next(
        motion.motion_frames(image, out_size=(64, 36), n_frames=2, preset="micro", strength=0.5)
    )
    assert frame.shape == (36, 64, 3)


# --- apply_camera (SVD frames) --------------------------------------------------------------


def test_apply_camera_follows_the_path_over_moving_frames() -> None:
    """Frames 1024x576 like SVD's, enlarged to 720p: the camera path is applied on top."""
    base = textured_photo(1024, 576, seed=8, scale=3)
    n, out = 8, (1280, 720)
    frames = [base] * n
    result = list(
        reframe.apply_camera(frames, out_size=out, n_frames=n, preset="pan_r", strength=0.2)
    )
    assert [f.shape for f in result] == [(720, 1280, 3)] * n
    path = motion.CameraPath("pan_r", 0.2, (1024, 576), out)
    boxes = list(path.boxes(n))
    centres = [(640, 360), (400, 300), (880, 420)]
    for i in range(1, n):
        for dx, dy, px, py in patch_motion(result[i - 1], result[i], centres, 192):
            ex, ey = box_displacement(boxes[i - 1], boxes[i], out, (px, py))
            assert math.hypot(dx - ex, dy - ey) <= 0.02
            assert dx < 0  # pan_r: content slides left


def test_apply_camera_takes_arrays_and_downscales() -> None:
    arrays = [np.asarray(textured_photo(400, 300, seed=s)) for s in range(4)]
    result = list(
        reframe.apply_camera(arrays, out_size=(160, 90), n_frames=4, preset="tilt_up", strength=0.5)
    )
    assert [f.shape for f in result] == [(90, 160, 3)] * 4


@pytest.mark.parametrize(
    ("frames", "n"),
    [
        ([np.zeros((64, 64, 3), np.uint8)] * 3, 4),  # fewer than announced
        ([np.zeros((64, 64, 3), np.uint8)] * 5, 4),  # more
        ([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 80, 3), np.uint8)], 2),  # sizes differ
        ([np.zeros((64, 64), np.uint8)], 1),  # not RGB
        ([np.zeros((64, 64, 3), np.float32)], 1),  # not uint8
    ],
)
def test_apply_camera_rejects_bad_frames(frames: list[np.ndarray], n: int) -> None:
    with pytest.raises(InvalidParams):
        list(
            reframe.apply_camera(frames, out_size=(32, 32), n_frames=n, preset="micro", strength=0)
        )
