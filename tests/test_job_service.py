"""The job service against an in-memory executor (the port of executor.py): the service alone
owns the transitions, the live figures and the retry policy, whatever renders. Each case runs
in well under a second, with no GPU thread and no worker process, on both stores of record:
the single box's SQLite and a cluster's PostgreSQL (the session's server)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fanslymotion.errors import RenderError
from fanslymotion.executor import CancelledByUser, Reports
from fanslymotion.metrics import Metrics
from fanslymotion.models import JobRequest, Phase, Progress
from fanslymotion.queue import JobQueue
from fanslymotion.renderer import Renderer, RenderSpec
from fanslymotion.retry import Failed
from fanslymotion.store import Job, Store
from fanslymotion.store.port import BotStore, JobStore

from .conftest import make_settings, photo_bytes


class MemoryExecutor:
    """Renders nothing by itself: the test says when a job starts, progresses and ends."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.reports: Reports | None = None
        self.enqueued_ids: list[str] = []
        self.cancelled_ids: list[str] = []
        self.paused = False
        self.renderer: Renderer | None = None
        self.renderer_name = "motion"
        self.renders_stories = False

    def serving(self) -> tuple[str, Callable[[RenderSpec], float]] | None:
        return "motion", lambda spec: math.nan

    def lanes(self) -> int:
        return 1

    async def start(self, reports: Reports) -> None:
        self.reports = reports

    async def stop(self, grace: float) -> None:
        pass

    async def ready(self) -> None:
        pass

    async def admit(self) -> None:
        pass

    async def enqueued(self, job: Job) -> None:
        self.enqueued_ids.append(job.job_id)

    async def cancel(self, job: Job) -> None:
        self.cancelled_ids.append(job.job_id)
        if job.status == "processing":
            assert self.reports is not None
            await self.reports.finished(job, CancelledByUser(), 1.0)

    async def set_paused(self, paused: bool) -> None:
        self.paused = paused

    async def health(self) -> dict[str, Any]:
        return {"ok": True}

    async def refresh_metrics(self, metrics: Metrics) -> None:
        pass

    async def take(self, job_id: str) -> Job:
        """What an executor does when it starts a job."""
        started = await self.store.start_job(job_id, "motion")
        assert started is not None and self.reports is not None
        self.reports.started(started, "in memory")
        return started


@contextlib.asynccontextmanager
async def store_of(
    dialect: str, request: pytest.FixtureRequest, path: Path
) -> AsyncIterator[BotStore]:
    """The single box's store (SQLite) or a cluster's (PostgreSQL, a new database)."""
    if dialect == "sqlite":
        store = await Store.open(path)
        try:
            yield store
        finally:
            await store.close()
        return
    from fanslymotion.cluster.db import ClusterDB
    from fanslymotion.cluster.store import PgStore

    db = await ClusterDB.open(request.getfixturevalue("pg_url"))
    try:
        await db.migrate()
        yield PgStore(db)
    finally:
        await db.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def service(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[JobQueue, MemoryExecutor]]:
    settings = make_settings(tmp_path / "data", retry_backoff=60.0, progress_interval=0.01)
    async with store_of(request.param, request, settings.db_path) as store:
        executor = MemoryExecutor(store)
        jobs = JobQueue(settings, store, executor)
        await jobs.start()
        try:
            yield jobs, executor
        finally:
            await jobs.stop()


def request(user_id: int = 1) -> JobRequest:
    return JobRequest(user_id=user_id, duration=3, resolution="360p", motion_preset="pan_l")


async def test_a_failed_attempt_is_requeued_by_the_policy_without_its_phase(
    service: tuple[JobQueue, MemoryExecutor],
) -> None:
    jobs, executor = service
    job, created = await jobs.submit(request(), photo_bytes())
    assert created and executor.enqueued_ids == [job.job_id]
    started = await executor.take(job.job_id)
    assert jobs.running_job_id() == job.job_id
    assert executor.reports is not None
    executor.reports.progress(started, Progress(50.0, Phase.RENDERING, 2, 4))
    executor.reports.progress(started, Progress(40.0, Phase.RENDERING, 2, 4))  # never back
    live = jobs.live_progress(job.job_id)
    assert live is not None and (live.percent, live.step, live.steps) == (50.0, 2, 4)
    await executor.reports.finished(started, Failed(RenderError("the encoder failed")), 2.0)
    queued = await jobs.get(job.job_id)
    assert (queued.status, queued.attempts, queued.error) == ("queued", 1, "the encoder failed")
    assert (queued.phase, queued.phase_step, queued.progress) == ("", 0, 0)
    assert queued.not_before > 0 and jobs.running_job_id() is None


async def test_cancel_reaches_the_executor_and_the_service_commits_it(
    service: tuple[JobQueue, MemoryExecutor],
) -> None:
    jobs, executor = service
    waiting, _ = await jobs.submit(request(1), photo_bytes())
    running, _ = await jobs.submit(request(2), photo_bytes())
    await executor.take(running.job_id)
    ended = await jobs.cancel(running.job_id)
    assert ended.status == "cancelled" and jobs.running_job_id() is None
    dropped = await jobs.cancel(waiting.job_id)
    assert dropped.status == "cancelled"
    assert executor.cancelled_ids == [running.job_id, waiting.job_id]
