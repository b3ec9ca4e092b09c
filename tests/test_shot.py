"""The shot on the real service: frame rates probed from the MP4, the subject kept in frame,
focus and keyframes followed (boxes from /camera against the decoded frames), seeds, loops and
the upscale warning, through /job/create, /job/status, /job/result and /camera."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image

from fanslymotion import motion, video

from .conftest import Client, ServiceFactory, assert_error_body, photo_bytes
from .test_camera import composite, true_face


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()


@pytest.fixture(scope="module")
def face_photo() -> bytes:
    return jpeg(composite())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(err, 1e-12)))


async def mp4_of(client: Client, job: dict[str, Any]) -> Path:
    row = await client.service.store.get_job(job["job_id"])
    assert row is not None and row.output_path is not None
    return client.service.settings.data_dir / row.output_path


async def frames_of(client: Client, job: dict[str, Any]) -> list[np.ndarray]:
    return list(video.read_frames(await mp4_of(client, job)))


def expected_frame(photo: Image.Image, box: list[float], size: tuple[int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.asarray(photo.resize(size, Image.Resampling.BICUBIC, box=(x0, y0, x1, y1)))


async def camera_post(client: Client, image: bytes | None, **fields: Any) -> dict[str, Any]:
    payload = {"duration": 3, "resolution": "360p", "motion_preset": "pan_l", **fields}
    if image is not None:
        payload["image_data"] = base64.b64encode(image).decode()
    status, body, _ = await client.request("POST", "/camera", json=payload)
    assert status == 200, body
    return dict(body)


async def render(client: Client, image: bytes, **params: Any) -> dict[str, Any]:
    status, created = await client.create(image, **params)
    assert status == 201, created
    final = await client.wait(created["job_id"])
    assert final["status"] == "completed", final
    return {**final, "created": created}


@pytest.mark.parametrize("fps", [24, 30])
async def test_fps_is_probed_from_the_mp4(client: Client, fps: int) -> None:
    job = await render(client, photo_bytes(), fps=fps, duration=3, motion_preset="pan_r")
    assert job["fps"] == fps and job["created"]["fps"] == fps
    path = await mp4_of(client, job)
    info = video.probe(path)
    assert info.fps == pytest.approx(fps) and info.frames == 3 * fps
    assert sum(1 for _ in video.read_frames(path)) == 3 * fps
    _, result, _ = await client.request("GET", f"/job/result/{job['job_id']}")
    assert result["fps"] == fps and result["parameters"]["fps"] == fps
    assert result["frames"] == 3 * fps and result["duration"] == pytest.approx(3.0)


async def test_the_default_rate_is_24(start_service: ServiceFactory, tmp_path: Path) -> None:
    from fanslymotion.config import Settings

    assert Settings(_env_file=None).fps == 24
    client = await start_service(fps=24)
    job = await render(client, photo_bytes(), duration=3)
    assert job["fps"] == 24
    assert video.probe(await mp4_of(client, job)).frames == 72


@pytest.mark.parametrize("preset", motion.PRESETS)
async def test_an_off_centre_face_stays_in_every_frame_of_a_vertical_clip(
    client: Client, face_photo: bytes, preset: str
) -> None:
    params = {"aspect": "9:16", "motion_preset": preset, "seed": 5}
    job = await render(client, face_photo, **params)
    assert job["framing"] == "face" and job["created"]["framing"] == "face"
    preview = await camera_post(client, face_photo, **params)
    assert preview["framing"] == "face" and preview["output"] == {"width": 360, "height": 640}
    fx0, fy0, fx1, fy1 = true_face()
    found = preview["subject"]["faces"][0]
    assert found[0] * 1600 < (fx0 + fx1) / 2 < found[2] * 1600
    frames = await frames_of(client, job)
    assert len(frames) == len(preview["boxes"]) == 12
    photo = Image.open(io.BytesIO(face_photo)).convert("RGB")
    for frame, box in zip(frames, preview["boxes"], strict=True):
        x0, y0, x1, y1 = box
        assert x0 <= fx0 and fx1 <= x1 and y0 <= fy0 and fy1 <= y1, (preset, box)
        # The frame is that box of the photo: /camera tells the truth about the render.
        assert psnr(frame, expected_frame(photo, box, (360, 640))) > 30.0


async def test_focus_and_keyframes_are_followed(client: Client) -> None:
    raw = photo_bytes(800, 500, seed=4)
    photo = Image.open(io.BytesIO(raw)).convert("RGB")
    focus = {"x": 0.2, "y": 0.3}
    job = await render(client, raw, motion_preset="dolly_in", focus=focus, seed=3)
    assert job["framing"] == "focus"
    preview = await camera_post(
        client, None, width=800, height=500, motion_preset="dolly_in", focus=focus, seed=3
    )
    assert preview["framing"] == "focus"
    x0, y0, _, y1 = preview["boxes"][-1]
    # The push ends on the focus as far as the photo allows: (160, 150) is nearer the corner
    # than half the end window, so it ends in the top left corner.
    assert x0 == pytest.approx(0.0, abs=1.5) and y0 == pytest.approx(0.0, abs=1.5)
    assert (y1 - y0) < 450 / 1.25  # pushed in
    for frame, box in zip(await frames_of(client, job), preview["boxes"], strict=True):
        assert psnr(frame, expected_frame(photo, box, (640, 360))) > 30.0

    cam = {
        "keyframes": [
            {"t": 0, "x": 0.35, "y": 0.5, "zoom": 1.5},
            {"t": 0.5, "x": 0.5, "y": 0.4, "zoom": 2.5},
            {"t": 1, "x": 0.65, "y": 0.55, "zoom": 1.5},
        ],
        "ease": "linear",
    }
    job = await render(client, raw, camera=cam, seed=3)
    assert job["framing"] == "camera"
    query = {
        "width": "800",
        "height": "500",
        "duration": "3",
        "resolution": "360p",
        "motion_preset": "pan_l",
        "camera": json.dumps(cam),
    }
    status, preview, _ = await client.request("GET", "/camera", params=query)
    assert status == 200 and preview["framing"] == "camera", preview
    _, result, _ = await client.request("GET", f"/job/result/{job['job_id']}")
    assert result["parameters"]["camera"] == cam and result["framing"] == "camera"
    boxes = preview["boxes"]
    fit_w = min(800, 500 * 16 / 9)
    assert (boxes[0][0] + boxes[0][2]) / 2 == pytest.approx(0.35 * 800, abs=0.01)
    assert boxes[0][2] - boxes[0][0] == pytest.approx(fit_w / 1.5, abs=0.01)
    for frame, box in zip(await frames_of(client, job), boxes, strict=True):
        assert psnr(frame, expected_frame(photo, box, (640, 360))) > 30.0


async def test_seeds_differ_and_repeat(client: Client) -> None:
    raw = photo_bytes(900, 600, seed=8)
    runs = [await render(client, raw, motion_preset="pan_l", seed=s) for s in (1, 1, 2)]
    one, again, two = [await frames_of(client, job) for job in runs]
    assert all(np.array_equal(a, b) for a, b in zip(one, again, strict=True))
    middle = len(one) // 2
    assert psnr(one[middle], two[middle]) < 25.0  # a visibly different clip


async def test_a_loop_closes(client: Client) -> None:
    raw = photo_bytes(900, 600, seed=2)
    looped = await frames_of(client, await render(client, raw, motion_preset="dolly_in", loop=True))
    # The same picture to within encoder noise (this noisy photo at CRF 20: ~36 dB between two
    # encodings of one frame), after going somewhere (well under 30 dB from the start).
    closing = psnr(looped[0], looped[-1])
    assert closing > 33.0
    assert psnr(looped[0], looped[len(looped) // 2]) < closing - 8
    plain = await frames_of(client, await render(client, raw, motion_preset="dolly_in"))
    assert psnr(plain[0], plain[-1]) < closing - 8


async def test_a_small_photo_is_warned_about(client: Client) -> None:
    raw = photo_bytes(451, 300, seed=1)
    status, created = await client.create(raw, resolution="720p", motion_preset="pan_l")
    assert status == 201, created
    (warning,) = created["warnings"]
    assert warning["code"] == "upscale" and warning["factor"] >= 2.8
    assert warning["max_resolution"] is None and "720p" in warning["message"]
    final = await client.wait(created["job_id"])
    assert final["warnings"] == created["warnings"]
    # Before creating: the same warning from /camera, with and without the photo.
    fields = {"resolution": "720p", "motion_preset": "pan_l"}
    assert (await camera_post(client, raw, **fields))["warnings"] == created["warnings"]
    sized = await camera_post(client, None, width=451, height=300, **fields)
    assert sized["warnings"] == created["warnings"]
    # A photo big enough for 360p but not 720p names 360p.
    sized = await camera_post(client, None, width=900, height=500, **fields)
    assert sized["warnings"][0]["max_resolution"] == "360p"
    status, created = await client.create(raw, resolution="360p", motion_preset="micro")
    assert status == 201 and created["warnings"] == []


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"fps": 25}, "fps"),
        ({"fps": "24"}, "fps"),
        ({"focus": {"x": 1.2, "y": 0.5}}, "focus.x"),
        ({"loop": "yes"}, "loop"),
        ({"camera": {"keyframes": [{"t": 0, "x": 0.5, "y": 0.5}]}}, "keyframes"),
        (
            {"camera": {"keyframes": [{"t": 0, "x": 0.1, "y": 0.5}, {"t": 1, "x": 0.5, "y": 0.5}]}},
            "camera.keyframes[0]: the window leaves the photo at the left by",
        ),
        (
            {"camera": {"keyframes": [{"t": 1, "x": 0.5, "y": 0.5}, {"t": 0, "x": 0.5, "y": 0.5}]}},
            "keyframes[1].t",
        ),
    ],
)
async def test_bad_shots_are_refused_with_words(
    client: Client, params: dict[str, Any], words: str
) -> None:
    status, body = await client.create(photo_bytes(320, 240), **params)
    assert status == 422, body
    assert_error_body(body, 422)
    assert words in body["error"], body


async def test_the_multipart_form_takes_the_shot_too(client: Client, face_photo: bytes) -> None:
    form = aiohttp.FormData()
    form.add_field("image", face_photo, filename="face.jpg", content_type="image/jpeg")
    for name, value in {
        "user_id": "1",
        "duration": "3",
        "resolution": "360p",
        "motion_preset": "micro",
        "fps": "30",
        "loop": "true",
        "focus": json.dumps({"x": 0.7, "y": 0.4}),
    }.items():
        form.add_field(name, value)
    status, created, _ = await client.request("POST", "/job/create", data=form)
    assert status == 201, created
    assert created["fps"] == 30 and created["framing"] == "focus"
    final = await client.wait(created["job_id"])
    _, result, _ = await client.request("GET", f"/job/result/{final['job_id']}")
    assert result["parameters"]["loop"] is True and result["parameters"]["focus"] == {
        "x": 0.7,
        "y": 0.4,
    }
    assert result["frames"] == 90
    # And the camera route in the same form, with the photo.
    form = aiohttp.FormData()
    form.add_field("image", face_photo, filename="face.jpg", content_type="image/jpeg")
    for name, value in {"duration": "3", "resolution": "360p", "motion_preset": "micro"}.items():
        form.add_field(name, value)
    status, preview, _ = await client.request("POST", "/camera", data=form)
    assert status == 200 and preview["framing"] == "face", preview


async def test_the_roll_can_be_turned_off(start_service: ServiceFactory, tmp_path: Path) -> None:
    """CAMERA_ROLL: on (the default) the seed's variation rolls the frames slightly, so they
    leave the upright windows of /camera; off, they are those windows exactly."""
    raw = photo_bytes(900, 600, seed=6)
    picture = Image.open(io.BytesIO(raw)).convert("RGB")
    fit: dict[bool, float] = {}
    for roll in (True, False):
        client = await start_service(camera_roll=roll, data_dir=tmp_path / f"roll-{roll}")
        params: dict[str, Any] = {"motion_preset": "micro", "strength": 1.0, "seed": 9}
        job = await render(client, raw, duration=3, **params)
        boxes = (await camera_post(client, None, width=900, height=600, **params))["boxes"]
        frames = await frames_of(client, job)
        fit[roll] = min(
            psnr(frame, expected_frame(picture, box, (frame.shape[1], frame.shape[0])))
            for frame, box in zip(frames, boxes, strict=True)
        )
    print(
        f"worst frame against the upright windows: rolled {fit[True]:.1f} dB, off {fit[False]:.1f} dB"
    )
    assert fit[False] > 30.0
    assert fit[True] < fit[False] - 5
