"""SVD jobs resume from their pass checkpoints, and show a live preview (issue 15).

On the CPU with the tiny random-weight pipeline (tests/svd_tiny.py, 6 frames a pass). Denoising
steps are counted by wrapping the pipeline's UNet: a forward pre-hook in this process, a
`sitecustomize` that wraps `UNetSpatioTemporalConditionModel.forward` in the service processes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fanslymotion import api_files, checkpoints, datadir, video
from fanslymotion.backends import select_renderer
from fanslymotion.errors import Cancelled
from fanslymotion.models import Progress
from fanslymotion.renderer import Preview, RenderSpec, RenderTask
from fanslymotion.svd import SVDRenderer

from .conftest import Client, ServiceFactory, make_settings, photo_bytes
from .test_process import Process

torch.set_num_threads(1)

pytestmark = [
    # diffusers' scheduler calls np.array() on a torch tensor (see tests/test_svd.py).
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]

# 16 frames at 6 a pass with 2 shared: 4 passes.
SPEC = RenderSpec(duration=2, resolution="360p", motion="pan_l", fps=8, steps=2, seed=7)
PASSES = 4


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory, tiny_svd: Path) -> SVDRenderer:
    settings = make_settings(
        tmp_path_factory.mktemp("svd-resume") / "data",
        renderer="svd",
        svd_model=str(tiny_svd),
        svd_device="cpu",
        svd_size=128,
    )
    chosen = select_renderer(settings)
    assert isinstance(chosen, SVDRenderer)
    chosen.load()
    assert chosen.state.status == "ready", chosen.state
    return chosen


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(photo_bytes(320, 200))
    return path


class UnetCalls:
    """Counts the UNet's forward calls: one per denoising step (both guidance halves batched)."""

    def __init__(self, renderer: SVDRenderer) -> None:
        self.count = 0
        self._handle = renderer.pipeline.unet.register_forward_pre_hook(self._hook)

    def _hook(self, module: object, args: object) -> None:
        self.count += 1

    def close(self) -> None:
        self._handle.remove()


@pytest.fixture
def unet_calls(renderer: SVDRenderer) -> Iterator[UnetCalls]:
    calls = UnetCalls(renderer)
    yield calls
    calls.close()


Events = list[tuple[float, str]]


def render(
    renderer: SVDRenderer,
    photo: Path,
    out: Path,
    *,
    work: Path | None,
    spec: RenderSpec = SPEC,
    stop_at: str | None = None,
    previews: list[Preview] | None = None,
) -> Events:
    """Render one job; with `stop_at`, cancel it when that phase first shows (as SIGTERM does)."""
    events: Events = []
    cancel = threading.Event()

    def progress(report: Progress) -> None:
        events.append((report.percent, report.message))
        if report.message == stop_at:
            cancel.set()

    task = RenderTask("job", spec, photo, out, {}, work_dir=work, on_preview=previews_add(previews))
    renderer.render(task, progress, cancel)
    return events


def previews_add(previews: list[Preview] | None) -> Callable[[Preview], None] | None:
    return previews.append if previews is not None else None


def frames_of(path: Path) -> np.ndarray:
    return np.stack(list(video.read_frames(path)))


def passes_done(work: Path) -> int:
    with np.load(work / checkpoints.STATE) as data:
        return int(data["passes_done"])


def test_resumed_render_continues_and_matches(
    renderer: SVDRenderer,
    unet_calls: UnetCalls,
    photo: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopped in pass 3, the job keeps 2 passes; started again it runs only passes 3 and 4,
    from the right percentage, and makes exactly the frames of an uninterrupted render."""
    plain = tmp_path / "plain.mp4"
    render(renderer, photo, plain, work=None)
    assert unet_calls.count == PASSES * SPEC.steps

    work = tmp_path / "work"
    with pytest.raises(Cancelled):
        render(renderer, photo, tmp_path / "a.mp4", work=work, stop_at=f"animating 3/{PASSES}")
    assert passes_done(work) == 2
    assert sorted(p.name for p in work.glob("pass-*.npz")) == ["pass-00.npz", "pass-01.npz"]
    assert (work / checkpoints.PREVIEW).is_file()

    unet_calls.count = 0
    resumed = tmp_path / "resumed.mp4"
    with caplog.at_level(logging.INFO, logger="fanslymotion"):
        events = render(renderer, photo, resumed, work=work)
    assert unet_calls.count == 2 * SPEC.steps  # passes 3 and 4 only
    assert f"resuming from pass 3/{PASSES}" in caplog.text
    percent, phase = events[1]  # after "preparing"
    assert phase == f"resumed 3/{PASSES}"
    assert percent == pytest.approx((85 + 10) * 2 / PASSES)
    assert all(later >= percent for later, _ in events[2:])
    assert passes_done(work) == PASSES
    assert np.array_equal(frames_of(resumed), frames_of(plain))


def test_render_after_the_last_pass_only_encodes(
    renderer: SVDRenderer, unet_calls: UnetCalls, photo: Path, tmp_path: Path
) -> None:
    """Stopped while encoding, the job has every pass: the next attempt runs no step at all."""
    work = tmp_path / "work"
    first = tmp_path / "first.mp4"
    render(renderer, photo, first, work=work)
    assert passes_done(work) == PASSES
    unet_calls.count = 0
    again = tmp_path / "again.mp4"
    events = render(renderer, photo, again, work=work)
    assert unet_calls.count == 0
    assert f"resumed {PASSES}/{PASSES}" in [phase for _, phase in events]
    assert np.array_equal(frames_of(again), frames_of(first))


def test_checkpoint_of_other_parameters_is_ignored(
    renderer: SVDRenderer,
    unet_calls: UnetCalls,
    photo: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    work = tmp_path / "work"
    with pytest.raises(Cancelled):
        render(renderer, photo, tmp_path / "a.mp4", work=work, stop_at=f"animating 3/{PASSES}")
    assert passes_done(work) == 2

    unet_calls.count = 0
    other = RenderSpec(**{**SPEC.__dict__, "seed": SPEC.seed + 1})
    with caplog.at_level(logging.INFO, logger="fanslymotion"):
        render(renderer, photo, tmp_path / "b.mp4", work=work, spec=other)
    assert unet_calls.count == PASSES * SPEC.steps  # every pass again
    assert "belongs to other parameters" in caplog.text
    assert "resuming" not in caplog.text
    assert passes_done(work) == PASSES  # the folder now holds the new job's passes
    with np.load(work / checkpoints.STATE) as data:
        assert json.loads(data["params"].tobytes())["seed"] == SPEC.seed + 1


def test_preview_after_each_pass(renderer: SVDRenderer, photo: Path, tmp_path: Path) -> None:
    """A small MP4 of the frames so far, through the camera path, after every pass."""
    previews: list[Preview] = []
    work = tmp_path / "work"
    render(renderer, photo, tmp_path / "out.mp4", work=work, previews=previews)
    assert [p.passes_done for p in previews] == [1, 2, 3, 4]
    # Each pass but the last keeps 4 frames (2 are shared with the next); the clip has 16.
    assert [p.frames for p in previews] == [4, 8, 12, 16]
    assert all(p.passes == PASSES and p.path == work / "preview.mp4" for p in previews)
    info = video.probe(work / checkpoints.PREVIEW)
    assert (info.frames, info.width, info.height) == (16, 320, 180)  # 640x360 output
    assert info.fps == pytest.approx(SPEC.fps)
    assert (work / checkpoints.PREVIEW).stat().st_size < 300_000


def test_no_checkpoints_when_the_disk_is_almost_full(tmp_path: Path) -> None:
    """Checkpoints never eat the disk guard's margin: below it, they are skipped."""
    store = checkpoints.PassStore(tmp_path / "work", {"seed": 1}, min_free_bytes=1 << 62)
    frames = np.zeros((4, 64, 128, 3), np.uint8)
    reference = (np.zeros((1, 3, 1, 1), np.float32), np.ones((1, 3, 1, 1), np.float32))
    store.save(0, frames, frames[:2], reference)
    store.close()
    assert not list((tmp_path / "work").glob("*.npz"))


def test_scratch_bound_of_a_job(tmp_path: Path, tiny_svd: Path) -> None:
    """The disk guard's reservation: every kept frame and one tail, raw, at the working size."""
    settings = make_settings(tmp_path, renderer="svd", svd_size=1024, fps=12)
    svd = SVDRenderer(settings, device="cpu", weights=tiny_svd)  # SVD-XT's 25 frames a pass
    spec = RenderSpec(duration=12, resolution="1080p", motion="pan_l", fps=12)
    # Generated at 6 fps and interpolated: 4 passes, 3 keep 20 frames, the last 25, plus a tail.
    assert svd.scratch_bytes(spec) == (3 * 20 + 25 + 5) * 1024 * 576 * 3 + (1 << 20)
    svd.generation_fps = 12  # the old plan, every frame generated
    # 7 passes: 6 keep 20 frames, the last 25, plus a 5-frame tail.
    assert svd.scratch_bytes(spec) == (6 * 20 + 25 + 5) * 1024 * 576 * 3 + (1 << 20)


# -- the service -------------------------------------------------------------------------------


async def sse_events(client: Client, job_id: str, on_event: Any = None) -> list[tuple[str, Any]]:
    """Every SSE event of a job until the stream closes; `on_event(kind, data)` sees each."""
    seen: list[tuple[str, Any]] = []
    async with client.session.get(f"{client.base}/job/{job_id}/events") as response:
        kind = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                seen.append((kind, data))
                if on_event is not None:
                    await on_event(kind, data)
    return seen


async def wait_gone(path: Path, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while await asyncio.to_thread(path.exists):
        assert time.monotonic() < deadline, f"{path} is still there"
        await asyncio.sleep(0.05)


async def svd_client(start_service: ServiceFactory, tiny_svd: Path, **extra: Any) -> Client:
    settings: dict[str, Any] = {"svd_size": 128, **extra}
    return await start_service(
        renderer="svd", svd_model=str(tiny_svd), svd_device="cpu", **settings
    )


async def test_service_preview_route_and_event(
    start_service: ServiceFactory, tiny_svd: Path
) -> None:
    """The SSE `preview` event names the preview; the route serves it while the job runs; at
    the end the work folder is gone and the route says there is none."""
    client = await svd_client(start_service, tiny_svd)
    status, created = await client.create(duration=3, steps=2, seed=5)
    assert status == 201, created
    job_id = created["job_id"]
    work = checkpoints.work_dir(client.service.settings.data_dir, job_id)
    fetched: list[tuple[int, bytes]] = []

    async def on_event(kind: str, data: Any) -> None:
        if kind == "preview" and not fetched:
            status, body, response = await client.request("GET", data["preview"]["url"])
            assert response.content_type == "video/mp4"
            fetched.append((status, body))

    events = await sse_events(client, job_id, on_event)
    assert all(data["status"] == "processing" for kind, data in events if kind == "preview")
    previews = [data["preview"] for kind, data in events if kind == "preview"]
    # 3 s at 4 fps: 12 frames in 3 passes.
    assert [p["passes_done"] for p in previews] == [1, 2, 3]
    assert previews[0]["url"] == f"/job/{job_id}/preview" and previews[0]["passes"] == 3
    assert [p["frames"] for p in previews] == [4, 8, 12]
    assert events[-1][0] == "completed"
    assert fetched and fetched[0][0] == 200
    served = client.service.settings.data_dir / "preview.mp4"
    served.write_bytes(fetched[0][1])
    info = video.probe(served)
    assert (info.frames, info.width, info.height) == (4, 320, 180)

    await wait_gone(work)
    status, body, _ = await client.request("GET", f"/job/{job_id}/preview")
    assert status == 409 and body["ok"] is False
    status, _, _ = await client.request("GET", f"/job/{uuid.uuid4()}/preview")
    assert status == 404


async def test_service_cancel_removes_the_checkpoints(
    start_service: ServiceFactory, tiny_svd: Path
) -> None:
    client = await svd_client(start_service, tiny_svd)
    _, created = await client.create(duration=3, steps=3, seed=9)
    job_id = created["job_id"]
    work = checkpoints.work_dir(client.service.settings.data_dir, job_id)

    async def cancel_after_first_pass(kind: str, data: Any) -> None:
        if kind == "preview" and data["preview"]["passes_done"] == 1:
            assert (work / checkpoints.STATE).is_file()
            await client.request("POST", f"/job/{job_id}/cancel")

    events = await sse_events(client, job_id, cancel_after_first_pass)
    assert events[-1][0] == "cancelled"
    await wait_gone(work)


async def test_retry_after_an_error_resumes(
    start_service: ServiceFactory, tiny_svd: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model error in pass 3 fails the attempt; the retry starts at pass 3, not at pass 1."""
    client = await svd_client(start_service, tiny_svd)
    await client.service.jobs.wait_ready()
    renderer = client.service.jobs.renderer
    assert isinstance(renderer, SVDRenderer)
    denoised: list[int] = []

    def fault(stage: str) -> None:
        if stage == "denoise":
            denoised.append(1)
            if len(denoised) == 3:
                raise RuntimeError("a model fault in pass 3")

    renderer.fault_injector = fault
    try:
        with caplog.at_level(logging.INFO, logger="fanslymotion"):
            _, created = await client.create(duration=3, steps=2, seed=4)
            final = await client.wait(created["job_id"])
    finally:
        renderer.fault_injector = None
    assert final["status"] == "completed" and final["attempts"] == 1, final
    assert len(denoised) == 4  # passes 1, 2, 3 (failed), then 3 again
    assert f"svd job {created['job_id']}: resuming from pass 3/3" in caplog.text
    await wait_gone(checkpoints.work_dir(client.service.settings.data_dir, created["job_id"]))


async def test_motion_renderer_has_no_preview(client: Client) -> None:
    _, created = await client.create()
    events = await sse_events(client, created["job_id"])
    assert events[-1][0] == "completed"
    assert "preview" not in [kind for kind, _ in events]
    status, body, _ = await client.request("GET", f"/job/{created['job_id']}/preview")
    assert status == 409 and "no preview" in body["error"]
    assert not (client.service.settings.data_dir / "work").exists()


async def test_preview_needs_the_token_as_the_video_does(start_service: ServiceFactory) -> None:
    client = await start_service(api_token="secret-for-svd-resume")
    path = f"/job/{uuid.uuid4()}/preview"
    status, body, _ = await client.request("GET", path)
    assert status == 401 and body["ok"] is False
    status, body, _ = await client.request(
        "GET", path, headers={"Authorization": "Bearer secret-for-svd-resume"}
    )
    assert status == 404, body
    # A signed link opens it as it opens the video (the SSE event's url is one); a forged one not.
    signed = api_files.link(client.service.settings, path, path.split("/")[2])
    status, body, _ = await client.request("GET", signed)
    assert status == 404, body  # past the auth: the job does not exist
    status, body, _ = await client.request("GET", signed.replace("sig=", "sig=0"))
    assert status == 403 and body["code"] == "link_invalid"


async def test_housekeeping_removes_orphan_work_folders(client: Client) -> None:
    """A work folder whose job ended or never existed goes; a waiting job's stays."""
    service = client.service
    await service.jobs.pause()
    _, created = await client.create()
    data = service.settings.data_dir
    live = checkpoints.work_dir(data, created["job_id"])
    orphan = checkpoints.work_dir(data, str(uuid.uuid4()))
    for folder in (live, orphan):
        folder.mkdir(parents=True)
        (folder / checkpoints.STATE).write_bytes(b"x")
    await datadir.housekeeping(service.settings, service.store)
    assert live.is_dir() and not orphan.exists()


async def test_disk_guard_counts_the_checkpoints(
    start_service: ServiceFactory, tiny_svd: Path
) -> None:
    """With SVD, a job needs MIN_FREE_MB plus room for its checkpoints; the larger the job, the
    more room (the bound at a 2048 px working size: ~1 GB for 12 s, ~0.2 GB for 3 s)."""
    client = await svd_client(start_service, tiny_svd, svd_size=2048, fps=12)
    await client.service.jobs.wait_ready()
    await client.service.jobs.pause()  # nothing renders at that size on the CPU
    renderer = client.service.jobs.renderer
    assert isinstance(renderer, SVDRenderer)
    renderer.generation_fps = 12  # every frame generated: the largest bound at 12 fps
    long_job = renderer.scratch_bytes(RenderSpec(12, "360p", "pan_l", fps=12)) >> 20
    short_job = renderer.scratch_bytes(RenderSpec(3, "360p", "pan_l", fps=12)) >> 20
    assert long_job > short_job + 500
    free = client.service.jobs.free_disk_mb()
    client.service.settings.min_free_mb = int(free - (long_job + short_job) / 2)
    status, body = await client.create(duration=12)
    assert status == 507, body
    status, body = await client.create(duration=3)
    assert status == 201, body


# -- real processes: SIGKILL and SIGTERM --------------------------------------------------------

UNET_COUNTER = """\
import os

from diffusers import UNetSpatioTemporalConditionModel

_forward = UNetSpatioTemporalConditionModel.forward


def _counted(self, *args, **kwargs):
    with open(os.environ["FANSLYMOTION_TEST_UNET_CALLS"], "a") as calls:
        calls.write("1\\n")
    return _forward(self, *args, **kwargs)


UNetSpatioTemporalConditionModel.forward = _counted
"""


def svd_process(tmp_path: Path, tiny_svd: Path) -> Process:
    """The service on the tiny SVD, its UNet calls counted into FANSLYMOTION_TEST_UNET_CALLS."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(UNET_COUNTER)
    data = tmp_path / "data"
    data.mkdir()
    return Process(
        data,
        PYTHONPATH=f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        FANSLYMOTION_RENDERER="svd",
        FANSLYMOTION_SVD_MODEL=str(tiny_svd),
        FANSLYMOTION_SVD_DEVICE="cpu",
        FANSLYMOTION_SVD_SIZE="128",
        FANSLYMOTION_TEST_UNET_CALLS=str(tmp_path / "calls-1"),
    )


def calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for_passes(proc: Process, job_id: str, done: int, timeout: float = 120) -> None:
    """Until the job's checkpoint holds `done` passes (the state file is renamed into place)."""
    state = checkpoints.work_dir(proc.data_dir, job_id) / checkpoints.STATE
    deadline = time.monotonic() + timeout
    while not (state.is_file() and passes_done(state.parent) >= done):
        assert proc.proc is not None and proc.proc.poll() is None, proc.log()
        assert time.monotonic() < deadline, f"no checkpoint of {done} passes:\n{proc.log()}"
        time.sleep(0.02)


def stop_process(proc: Process) -> None:
    if proc.proc is not None and proc.proc.poll() is None:
        proc.proc.kill()
        proc.proc.wait()


@pytest.mark.serial  # the SIGKILL must land before a third tiny pass ends
def test_sigkill_after_two_passes_resumes_from_the_third(tmp_path: Path, tiny_svd: Path) -> None:
    """3 s at 4 fps is 3 passes. Killed after pass 2, the restarted service runs pass 3 alone
    (the log says so, the UNet count agrees), and the video decodes to the frames of the same
    job rendered uninterrupted by the same process."""
    proc = svd_process(tmp_path, tiny_svd)
    steps = 4
    try:
        proc.start()
        job_id = proc.create(duration=3, seed=11, steps=steps)
        wait_for_passes(proc, job_id, 2)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGKILL)
        assert proc.proc.wait() == -signal.SIGKILL
        assert proc.row(job_id)["status"] == "processing"
        work = checkpoints.work_dir(proc.data_dir, job_id)
        assert passes_done(work) == 2, "the kill landed after pass 3"
        assert calls(tmp_path / "calls-1") >= 2 * steps

        proc.env["FANSLYMOTION_TEST_UNET_CALLS"] = str(tmp_path / "calls-2")
        proc.start()
        assert proc.wait(job_id, ("completed", "failed", "cancelled"))["status"] == "completed"
        log = proc.log()
        assert f"svd job {job_id}: resuming from pass 3/3 (checkpoint)" in log
        assert calls(tmp_path / "calls-2") == steps  # pass 3 only
        _, resumed = proc.get(f"/job/download/{job_id}")

        # The same job again, uninterrupted, in the same process.
        again = proc.create(duration=3, seed=11, steps=steps)
        assert proc.wait(again, ("completed", "failed", "cancelled"))["status"] == "completed"
        assert calls(tmp_path / "calls-2") == 4 * steps
        _, plain = proc.get(f"/job/download/{again}")
        for name, blob in (("resumed.mp4", resumed), ("plain.mp4", plain)):
            (tmp_path / name).write_bytes(blob)
        a, b = frames_of(tmp_path / "resumed.mp4"), frames_of(tmp_path / "plain.mp4")
        assert a.shape == b.shape == (12, 360, 640, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # the encoder's rounding
        assert not work.exists()
        assert "Traceback" not in log
    finally:
        stop_process(proc)


def test_sigterm_mid_pass_parks_the_job_with_its_checkpoints(
    tmp_path: Path, tiny_svd: Path
) -> None:
    proc = svd_process(tmp_path, tiny_svd)
    try:
        proc.start()
        job_id = proc.create(duration=3, seed=3, steps=4)
        wait_for_passes(proc, job_id, 1)
        assert proc.stop(signal.SIGTERM) == 0
        row = proc.row(job_id)
        assert row["status"] == "queued" and row["attempts"] == 0
        work = checkpoints.work_dir(proc.data_dir, job_id)
        assert passes_done(work) >= 1
        assert (work / "pass-00.npz").is_file() and (work / checkpoints.PREVIEW).is_file()
        assert "stopped by shutdown, will resume" in proc.log()
        with sqlite3.connect(proc.data_dir / "fanslymotion.sqlite3") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        stop_process(proc)


def test_sigkill_resume_gives_the_uninterrupted_frames_on_five_passes(
    tmp_path: Path, tiny_svd: Path
) -> None:
    """3 s at 7 fps is 21 frames, 5 passes. Killed after pass 2, restarted, the job resumes
    from the checkpoint (tail frames, shared latents) and its video is the uninterrupted job's,
    bit for bit: the same pixels go to a deterministic x264."""
    proc = svd_process(tmp_path, tiny_svd)
    proc.env["FANSLYMOTION_FPS"] = "7"
    steps = 2
    try:
        proc.start()
        job_id = proc.create(duration=3, seed=21, steps=steps)
        wait_for_passes(proc, job_id, 2)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGKILL)
        assert proc.proc.wait() == -signal.SIGKILL
        work = checkpoints.work_dir(proc.data_dir, job_id)
        assert 2 <= passes_done(work) < 5
        done_before = passes_done(work)
        proc.env["FANSLYMOTION_TEST_UNET_CALLS"] = str(tmp_path / "calls-2")
        proc.start()
        assert proc.wait(job_id, ("completed", "failed", "cancelled"))["status"] == "completed"
        assert f"resuming from pass {done_before + 1}/5 (checkpoint)" in proc.log()
        assert calls(tmp_path / "calls-2") == (5 - done_before) * steps
        _, resumed = proc.get(f"/job/download/{job_id}")
        again = proc.create(duration=3, seed=21, steps=steps)
        assert proc.wait(again, ("completed", "failed", "cancelled"))["status"] == "completed"
        _, plain = proc.get(f"/job/download/{again}")
        for name, blob in (("resumed.mp4", resumed), ("plain.mp4", plain)):
            (tmp_path / name).write_bytes(blob)
        a, b = frames_of(tmp_path / "resumed.mp4"), frames_of(tmp_path / "plain.mp4")
        assert a.shape == b.shape == (21, 360, 640, 3)
        assert np.array_equal(a, b)
    finally:
        stop_process(proc)
