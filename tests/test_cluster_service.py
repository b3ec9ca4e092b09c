"""The front's job service in cluster mode, in this process, on a real PostgreSQL: the test
makes the workers' writes itself (procrastinate's fetch, then the same ClusterDB calls a
worker makes), so each case runs in about a second without worker processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fanslymotion.app import job_service
from fanslymotion.cluster.db import QUEUE, Attempt, ClusterDB
from fanslymotion.cluster.front import ClusterExecutor
from fanslymotion.errors import TooManyJobs
from fanslymotion.metrics import Metrics
from fanslymotion.models import JobRequest, Phase, Progress
from fanslymotion.queue import JobQueue
from fanslymotion.store import Job

from .cluster_stack import TOKEN
from .conftest import make_settings, photo_bytes


@pytest.fixture
async def front(tmp_path: Path, pg_url: str) -> AsyncIterator[JobQueue]:
    settings = make_settings(
        tmp_path / "data",
        database_url=pg_url,
        worker_token=TOKEN,
        max_queued=1,
        progress_interval=0.01,
        retry_backoff=60.0,
    )
    queue, _, _ = await job_service(settings, None, Metrics())
    await queue.start()
    try:
        yield queue
    finally:
        await queue.stop()


async def take(db: ClusterDB, worker: str = "w1") -> Attempt:
    """What a worker does: procrastinate's fetch, then our start."""
    wid = await db.one("SELECT procrastinate_register_worker_v1() AS id")
    assert wid is not None
    fetched = await db.one(
        "SELECT * FROM procrastinate_fetch_job_v2(ARRAY[%s]::varchar[], %s)", (QUEUE, wid["id"])
    )
    assert fetched is not None and fetched["id"] is not None, "nothing to take"
    job_id = str(fetched["args"]["job_id"])
    row = await db.start(job_id, int(fetched["id"]), worker, "motion")
    assert row is not None
    return Attempt(job_id, int(row["attempts"]), worker)


async def until(queue: JobQueue, job_id: str, check: object, within: float = 20) -> Job:
    """The job's row once `check(row)` holds and the job service has heard of it (the front
    follows NOTIFY: the row, in PostgreSQL, may be there first)."""

    def heard(job: Job) -> bool:
        return (queue.running_job(job_id) is not None) == (job.status == "processing")

    async with asyncio.timeout(within), queue.subscribe() as events:
        while not (check(job := await queue.get(job_id)) and heard(job)):  # type: ignore[operator]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):  # progress saves send no event
                    await events.get()
    return job


def db_of(front: JobQueue) -> ClusterDB:
    """The shared database the front's executor follows."""
    executor = front.executor
    assert isinstance(executor, ClusterExecutor)
    return executor.db


def request(user_id: int) -> JobRequest:
    return JobRequest(user_id=user_id, duration=3, resolution="360p", motion_preset="pan_l")


async def test_a_retried_job_waits_without_the_phase_of_its_failed_attempt(
    front: JobQueue,
) -> None:
    job, _ = await front.submit(request(1), photo_bytes())
    fence = await take(db_of(front))
    assert await db_of(front).progress(fence, Progress(50.0, Phase.RENDERING, 2, 4))
    seen = await until(front, job.job_id, lambda j: j.phase_steps == 4)
    assert (seen.status, seen.phase, seen.phase_step) == ("processing", "rendering", 2)
    back = await db_of(front).requeue(fence, count_attempt=True, not_before=1e12, error="a fault")
    assert back is not None
    queued = await until(front, job.job_id, lambda j: j.status == "queued")
    assert queued.attempts == 1 and queued.error == "a fault"
    assert (queued.phase, queued.phase_step, queued.phase_steps, queued.progress) == ("", 0, 0, 0)
    _, position, _ = await front.status_of(job.job_id)
    assert position == 1


@pytest.mark.serial  # a measured rate
async def test_a_full_queue_answers_429_with_retry_after_when_the_running_job_is_due(
    front: JobQueue,
) -> None:
    running, _ = await front.submit(request(1), photo_bytes())
    fence = await take(db_of(front))
    await until(front, running.job_id, lambda j: j.status == "processing")
    await asyncio.sleep(0.6)  # a measured rate needs half a second of rendering
    # The worker says it is at the end: the running job's rest is 0 s.
    assert await db_of(front).progress(fence, Progress(100.0, Phase.FINISHING))
    await until(front, running.job_id, lambda j: j.phase == "finishing")
    await front.submit(request(2), photo_bytes())  # fills the queue (MAX_QUEUED=1)
    with pytest.raises(TooManyJobs) as refused:
        await front.submit(request(3), photo_bytes())
    assert refused.value.details["cap"] == "queue"
    assert refused.value.retry_after is not None and refused.value.retry_after >= 1
