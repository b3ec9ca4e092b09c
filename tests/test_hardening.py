"""Faults and lifecycle: a dying GPU thread, a failing ffmpeg, a busy database, a full disk,
storage archive/prune, leftovers, input retention, and what logs may never contain."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fanslymotion import datadir, video
from fanslymotion.config import Settings
from fanslymotion.dispatcher import LocalExecutor
from fanslymotion.models import JobRequest
from fanslymotion.queue import JobQueue
from fanslymotion.renderer import (
    MotionRenderer,
    ProgressFn,
    RenderResult,
    RenderTask,
    RenderWorker,
)
from fanslymotion.store import Job, Store

from .conftest import ServiceFactory, make_settings, photo_bytes


class DyingOnceRenderer(MotionRenderer):
    """A real renderer whose first render ends its thread the way only a BaseException can."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "test: dies once")
        self.calls = 0

    def render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        self.calls += 1
        if self.calls == 1:
            raise SystemExit("simulated death of the GPU thread")
        return super().render(task, progress, cancel)


class BrokenEncoderOnceRenderer(MotionRenderer):
    """Sends its first job's video where ffmpeg cannot open it: a real ffmpeg failure."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "test: ffmpeg fails once")
        self.calls = 0

    def render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        self.calls += 1
        if self.calls == 1:
            unwritable = task.output_path.parent / "no-such-folder" / task.output_path.name
            task = dataclasses.replace(task, output_path=unwritable)
        return super().render(task, progress, cancel)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "data" / "fanslymotion.sqlite3")
    yield db
    await db.close()


async def wait_terminal(jobs: JobQueue, job_id: str, limit: float = 60) -> Job:
    for _ in range(int(limit / 0.05)):
        job = await jobs.get(job_id)
        if job.terminal:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def request(user_id: int = 1) -> JobRequest:
    return JobRequest(user_id=user_id, duration=3, resolution="360p", motion_preset="micro")


# The injected death is an unhandled exception in a thread by design: pytest reports it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_gpu_thread_death_restarts_it_and_retries_the_job(
    tmp_path: Path, store: Store
) -> None:
    settings = make_settings(tmp_path / "data", max_retries=2)
    renderer = DyingOnceRenderer(settings)
    jobs = JobQueue(
        settings, store, LocalExecutor(settings, store, RenderWorker(settings, renderer))
    )
    await jobs.start()
    try:
        job, _ = await jobs.submit(request(), photo_bytes())
        done = await wait_terminal(jobs, job.job_id)
        assert done.status == "completed" and done.attempts == 1
        assert renderer.calls == 2
        assert (await jobs.health())["gpu_thread_alive"] is True
        second, _ = await jobs.submit(request(user_id=2), photo_bytes())
        assert (await wait_terminal(jobs, second.job_id)).status == "completed"
    finally:
        await jobs.stop()


async def test_ffmpeg_failure_fails_that_job_and_the_next_runs(
    tmp_path: Path, store: Store
) -> None:
    settings = make_settings(tmp_path / "data", max_retries=0)
    jobs = JobQueue(
        settings,
        store,
        LocalExecutor(settings, store, RenderWorker(settings, BrokenEncoderOnceRenderer(settings))),
    )
    await jobs.start()
    try:
        first, _ = await jobs.submit(request(), photo_bytes())
        second, _ = await jobs.submit(request(user_id=2), photo_bytes())
        failed = await wait_terminal(jobs, first.job_id)
        assert failed.status == "failed" and failed.error
        assert "ffmpeg" in failed.error.lower() or "encod" in failed.error.lower()
        assert "/" not in failed.error and "Traceback" not in failed.error
        done = await wait_terminal(jobs, second.job_id)
        assert done.status == "completed"
        info = video.probe(settings.data_dir / (done.output_path or ""))
        assert info.frames == 12
    finally:
        await jobs.stop()


async def test_busy_database_is_waited_out(start_service: ServiceFactory) -> None:
    client = await start_service()
    await client.service.jobs.pause()
    locked = threading.Event()

    def hold_lock() -> None:
        db = sqlite3.connect(client.service.settings.db_path, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        threading.Event().wait(1.0)
        db.execute("COMMIT")
        db.close()

    holder = asyncio.get_running_loop().run_in_executor(None, hold_lock)
    await asyncio.get_running_loop().run_in_executor(None, locked.wait)
    status, body = await client.create()
    await holder
    assert status == 201, body
    assert (await client.service.store.get_job(body["job_id"])) is not None


async def test_disk_guard_refuses_with_507(start_service: ServiceFactory) -> None:
    client = await start_service(min_free_mb=10**9)
    status, body = await client.create()
    assert status == 507 and body["ok"] is False and "disk" in body["error"]
    assert await client.service.store.count_jobs() == 0


async def test_leftover_temporary_files_are_cleaned_at_start(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "hot").mkdir(parents=True)
    (data / "inputs").mkdir(parents=True)
    partial = data / "hot" / ".0b7c.partial.mp4"
    partial.write_bytes(b"half a video")
    half_photo = data / "inputs" / ".abc.img.tmp"
    half_photo.write_bytes(b"half a photo")
    kept = data / "hot" / "0b7c.mp4"
    kept.write_bytes(b"a finished video")
    await start_service(data_dir=data)
    assert not partial.exists() and not half_photo.exists()
    assert kept.exists()


async def test_archive_then_prune(start_service: ServiceFactory) -> None:
    client = await start_service(archive_after_days=7, prune_after_days=30)
    _, created = await client.create()
    job_id = created["job_id"]
    assert (await client.wait(job_id))["status"] == "completed"
    settings, store = client.service.settings, client.service.store

    assert await datadir.housekeeping(settings, store) == (0, 0)  # too young for either
    later = datetime.now(UTC) + timedelta(days=8)
    assert await datadir.housekeeping(settings, store, now=later) == (1, 0)
    job = await store.get_job(job_id)
    assert job is not None and job.output_path == f"archive/{job_id}.mp4"
    assert not (settings.hot_dir / f"{job_id}.mp4").exists()
    status, data, _ = await client.request("GET", f"/job/download/{job_id}")
    assert status == 200 and len(data) == job.size_bytes  # still served, from the archive

    much_later = datetime.now(UTC) + timedelta(days=31)
    assert await datadir.housekeeping(settings, store, now=much_later) == (0, 1)
    assert not (settings.archive_dir / f"{job_id}.mp4").exists()
    status, body, _ = await client.request("GET", f"/job/download/{job_id}")
    assert status == 410 and body["ok"] is False
    status, body, _ = await client.request("GET", f"/job/result/{job_id}")
    assert status == 200 and body["video_url"] is None and body["frames"] == 12


@pytest.mark.parametrize("retention", ["delete", "archive", "keep"])
async def test_input_retention(start_service: ServiceFactory, retention: str) -> None:
    client = await start_service(input_retention=retention)
    _, created = await client.create()
    job_id = created["job_id"]
    original = (await client.service.store.get_job(job_id)).input_path  # type: ignore[union-attr]
    assert (await client.wait(job_id))["status"] == "completed"
    settings = client.service.settings
    for _ in range(100):  # the input is retired just after the completion is committed
        job = await client.service.store.get_job(job_id)
        assert job is not None
        if retention == "keep" or job.input_path != original:
            break
        await asyncio.sleep(0.02)
    assert job is not None
    if retention == "delete":
        assert job.input_path is None
        assert not any(p.is_file() for p in settings.inputs_dir.iterdir())
    elif retention == "archive":
        assert job.input_path == f"archive/inputs/{job_id}.img"
        assert (settings.data_dir / job.input_path).is_file()
    else:
        assert job.input_path == original and (settings.data_dir / original).is_file()  # type: ignore[operator]


async def test_logs_hold_no_token_path_or_traceback(
    start_service: ServiceFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="fanslymotion")
    await start_service(host="0.0.0.0", data_dir=tmp_path / "open")
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "SECURITY" in r.getMessage()
    ]
    assert len(warnings) == 1  # open to the network without a token: said loudly
    client = await start_service(api_token="tok-very-secret-123", host="0.0.0.0")
    assert len([r for r in caplog.records if "SECURITY" in r.getMessage()]) == 1
    auth = {"Authorization": "Bearer tok-very-secret-123"}
    client.session.headers.update(auth)
    _, created = await client.create()
    await client.wait(created["job_id"])
    await client.create(image_data="%%%")
    await client.request("GET", "/job/status/../../etc/passwd")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "tok-very-secret-123" not in text
    assert "Traceback" not in text
    _, health, _ = await client.request("GET", "/health")
    assert "tok-very-secret" not in str(health)
    assert "tok-very-secret" not in repr(client.service.settings)  # SecretStr
