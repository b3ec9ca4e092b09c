"""SVD frames the shot as the camera-motion renderer does: the part of the photo it animates
and the camera over its frames follow `camera.svd_framing` for an aimed or keyframed shot.

Checked on the decoded MP4 of the tiny random-weight pipeline (tests/svd_tiny.py): its frames
are noise shaped by the picture it was given, so the MP4 matches the frames made from the
planned crop through the planned path, and not those of the centred crop the renderer used
to animate.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from fanslymotion import camera, interpolate, motion, photo, reframe, video, web
from fanslymotion.backends import select_renderer
from fanslymotion.renderer import RenderSpec, RenderTask
from fanslymotion.svd import SVDRenderer, svd_working_size
from fanslymotion.vocabulary import Progress

from .conftest import make_settings
from .imagetools import textured_photo

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]

SVD_SIZE = 128


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory, tiny_svd: Path) -> SVDRenderer:
    import torch

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("svd-framing")
    settings = make_settings(
        folder / "data", renderer="svd", svd_model=str(tiny_svd), svd_device="cpu", svd_size=128
    )
    chosen = select_renderer(settings)
    assert isinstance(chosen, SVDRenderer)
    chosen.load()
    return chosen


@pytest.fixture(scope="module")
def wide_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "wide.png"
    textured_photo(480, 200, seed=4, scale=1.5).save(path)
    return path


def _render(renderer: SVDRenderer, source: Path, out: Path, spec: RenderSpec) -> None:
    def progress(report: Progress) -> None:
        pass

    task = RenderTask("job", spec, source, out, {})
    renderer.render(task, progress, threading.Event())


def _expected(
    renderer: SVDRenderer, image: Image.Image, first: Image.Image, spec: RenderSpec, path: Any
) -> np.ndarray:
    """What the MP4 should hold when SVD animated `first` and the camera followed `path`."""
    plan = renderer.plan(spec)
    generated = renderer.working_frames(first, spec)
    frames = generated if plan.factor == 1 else interpolate.interpolate(generated, plan.factor)
    made = reframe.apply_path(itertools.islice(frames, spec.frames), path, spec.frames)
    return np.stack(list(made)).astype(np.float64)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def test_svd_animates_the_crop_an_aimed_shot_needs(
    renderer: SVDRenderer, wide_photo: Path, tmp_path: Path
) -> None:
    # A focus near the right edge of a 2.4:1 photo, a 16:9 push in toward it.
    shot = camera.aim(camera.make_shot(focus={"x": 0.9, "y": 0.45}), None)
    spec = RenderSpec(
        duration=1, resolution="360p", motion="dolly_in", aspect="16:9", fps=8, steps=2, seed=3
    )
    spec = RenderSpec(**{**spec.__dict__, "shot": shot})
    image = photo.load_photo(wide_photo)
    out_size = motion.output_size("360p", "16:9", *image.size)
    work = svd_working_size("16:9", SVD_SIZE)
    crop, path = camera.svd_framing("dolly_in", 0.5, image.size, out_size, work, shot=shot, seed=3)
    # The crop is the right-hand part of the photo, not its centre.
    assert crop == pytest.approx((480 - 200 * work[0] / work[1], 0, 480, 200))
    # The path ends with the focus point as near the frame's centre as the crop allows.
    x0, _, x1, _ = path.box(1.0)
    scale = (crop[2] - crop[0]) / work[0]
    end_centre = crop[0] + (x0 + x1) / 2 * scale
    assert abs(end_centre - 0.9 * 480) < abs(480 / 2 - 0.9 * 480)
    assert crop[0] + x0 * scale <= 0.9 * 480 <= crop[0] + x1 * scale

    out = tmp_path / "aimed.mp4"
    _render(renderer, wide_photo, out, spec)
    decoded = np.stack(list(video.read_frames(out))).astype(np.float64)
    assert decoded.shape == (8, 360, 640, 3)

    first = image.resize(work, Image.Resampling.LANCZOS, box=crop)
    planned = _expected(renderer, image, first, spec, path)
    centred_first = ImageOps.fit(image, work, method=Image.Resampling.LANCZOS)
    centred_path = motion.CameraPath("dolly_in", 0.5, work, out_size)
    centred = _expected(renderer, image, centred_first, spec, centred_path)
    near, far = _psnr(decoded, planned), _psnr(decoded, centred)
    print(f"PSNR against the planned crop {near:.1f} dB, the centred one {far:.1f} dB")
    assert near > 30, (near, far)
    assert near > far + 8, (near, far)


def test_svd_keeps_keyframed_windows_where_they_were_put(
    renderer: SVDRenderer, wide_photo: Path, tmp_path: Path
) -> None:
    keyframes = [
        {"t": 0, "x": 0.3, "y": 0.5, "zoom": 1.6},
        {"t": 1, "x": 0.45, "y": 0.45, "zoom": 2},
    ]
    shot = camera.aim(camera.make_shot(camera={"keyframes": keyframes, "ease": "linear"}), None)
    spec = RenderSpec(
        duration=1, resolution="360p", motion="pan_r", aspect="16:9", fps=8, steps=2, seed=5
    )
    spec = RenderSpec(**{**spec.__dict__, "shot": shot})
    image = photo.load_photo(wide_photo)
    out_size = motion.output_size("360p", "16:9", *image.size)
    work = svd_working_size("16:9", SVD_SIZE)
    crop, path = camera.svd_framing("pan_r", 0.5, image.size, out_size, work, shot=shot, seed=5)
    # The windows fit in a crop smaller than the photo: SVD animates just that part, and the
    # boxes mapped back onto the photo are the keyframed path's own.
    assert crop[2] - crop[0] < 480 * 0.75
    whole = camera.plan("pan_r", 0.5, image.size, out_size, shot=shot, seed=5)
    k = (crop[2] - crop[0]) / work[0]
    for t in np.linspace(0, 1, 9):
        x0, y0, x1, y1 = path.box(float(t))
        mapped = (crop[0] + x0 * k, crop[1] + y0 * k, crop[0] + x1 * k, crop[1] + y1 * k)
        assert mapped == pytest.approx(whole.box(float(t)), abs=1e-6)

    out = tmp_path / "keyed.mp4"
    _render(renderer, wide_photo, out, spec)
    decoded = np.stack(list(video.read_frames(out))).astype(np.float64)
    first = image.resize(work, Image.Resampling.LANCZOS, box=crop)
    planned = _expected(renderer, image, first, spec, path)
    centred_first = ImageOps.fit(image, work, method=Image.Resampling.LANCZOS)
    centred = _expected(renderer, image, centred_first, spec, path)
    near, far = _psnr(decoded, planned), _psnr(decoded, centred)
    assert near > 30 and near > far + 8, (near, far)


def test_the_camera_route_shows_svds_framing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, svd_size=SVD_SIZE)
    keyframes = [
        {"t": 0, "x": 0.3, "y": 0.5, "zoom": 1.6},
        {"t": 1, "x": 0.45, "y": 0.45, "zoom": 2},
    ]
    query = {
        "width": "480",
        "height": "200",
        "duration": "3",
        "resolution": "360p",
        "motion_preset": "pan_r",
        "aspect": "16:9",
        "fps": "24",
    }
    params = web.parse_camera_query(
        {**query, "camera": json.dumps({"keyframes": keyframes})}, settings
    )
    on_svd = web.camera_path(params, settings, "svd")["boxes"]
    on_motion = web.camera_path(params, settings, "motion")["boxes"]
    # Keyframed windows that fit a working crop are framed the same on both renderers.
    assert on_svd == [pytest.approx(b, abs=2e-3) for b in on_motion]
    focused = web.parse_camera_query({**query, "focus_x": "0.9", "focus_y": "0.45"}, settings)
    boxes = web.camera_path(focused, settings, "svd")["boxes"]
    # The pan ends on the focus, on the right-hand side of the photo, not its centre.
    assert boxes[-1][0] <= 0.9 * 480 <= boxes[-1][2] == pytest.approx(480, abs=0.01)


def test_the_live_preview_follows_the_shots_camera(
    renderer: SVDRenderer, wide_photo: Path, tmp_path: Path
) -> None:
    """The preview after each pass shows what the video will: its frame k is the output's
    frame k * stride (a generated frame, kept by the interpolation) seen at the preview's
    size, through the keyframed camera, not a centred preset."""
    keyframes = [
        {"t": 0, "x": 0.25, "y": 0.5, "zoom": 1.8},
        {"t": 1, "x": 0.6, "y": 0.45, "zoom": 2.4},
    ]
    shot = camera.aim(camera.make_shot(camera={"keyframes": keyframes, "ease": "linear"}), None)
    spec = RenderSpec(
        duration=1, resolution="360p", motion="pan_r", aspect="16:9", fps=24, steps=2, seed=5
    )
    spec = RenderSpec(**{**spec.__dict__, "shot": shot})
    plan = renderer.plan(spec)
    assert plan.factor > 1  # the preview runs at the generation rate, the video at 24 fps
    previews: list[Any] = []
    out, work = tmp_path / "keyed.mp4", tmp_path / "work"
    task = RenderTask("job", spec, wide_photo, out, {}, work_dir=work, on_preview=previews.append)
    renderer.render(task, lambda report: None, threading.Event())
    assert previews and previews[-1].frames == plan.generated

    shown = np.stack(list(video.read_frames(previews[-1].path))).astype(np.float64)
    height, width = shown.shape[1:3]
    decoded = list(video.read_frames(out))
    truth = np.stack(
        [
            np.asarray(Image.fromarray(decoded[k * plan.factor]).resize((width, height)))
            for k in range(plan.generated)
            if k * plan.factor < spec.frames
        ]
    ).astype(np.float64)
    # The old preview: SVD's frames through the preset, centred, at the same small size.
    image = photo.load_photo(wide_photo)
    out_size = motion.output_size("360p", "16:9", *image.size)
    work_size = svd_working_size("16:9", SVD_SIZE)
    crop, _ = camera.svd_framing("pan_r", 0.5, image.size, out_size, work_size, shot=shot, seed=5)
    first = image.resize(work_size, Image.Resampling.LANCZOS, box=crop)
    small = [
        np.asarray(Image.fromarray(f).resize((work_size[0] // 2 * 2, work_size[1] // 2 * 2)))
        for f in renderer.working_frames(first, spec)
    ]
    old = reframe.apply_camera(
        small, out_size=(width, height), n_frames=plan.generated, preset="pan_r", strength=0.5
    )
    centred = np.stack(list(old))[: len(truth)].astype(np.float64)
    near, far = _psnr(shown[: len(truth)], truth), _psnr(centred, truth)
    print(f"preview against the video {near:.1f} dB, a centred preview {far:.1f} dB")
    assert near > far + 6, (near, far)
