"""The dispatcher: the renderer's final choice, one fair order for serving and for positions.

Renderers here are real camera-motion renderers with a gate: a render waits until the test
opens it (watching the cancel flag meanwhile), so the test knows exactly which job runs when.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fanslymotion import video
from fanslymotion.config import Settings
from fanslymotion.dispatcher import LocalExecutor
from fanslymotion.errors import RenderError
from fanslymotion.models import JobRequest, Phase, Progress
from fanslymotion.queue import JobQueue
from fanslymotion.renderer import (
    MotionRenderer,
    ProgressFn,
    Renderer,
    RenderResult,
    RenderTask,
    RenderWorker,
    check_cancel,
)
from fanslymotion.store import Job, Store

from .conftest import make_settings, photo_bytes


class SlowFailingSVD(Renderer):
    """Stands in for an SVD candidate whose load fails after a while (the test says when)."""

    name = "svd"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.release = threading.Event()

    def load(self) -> None:
        self.release.wait(30)
        raise RenderError("SVD failed to load: the weights are damaged")

    def estimate_seconds(self, spec: object) -> float:
        return 9999.0  # far from the motion renderer's: an ETA built on it would show


class GatedRenderer(MotionRenderer):
    """Records the order it is asked to render in; each render waits for its gate."""

    def __init__(self, settings: Settings, fail_first: set[str] | None = None) -> None:
        super().__init__(settings, "test: gated")
        self.order: list[str] = []
        self.started = threading.Semaphore(0)
        self.gate = threading.Semaphore(0)
        self.fail_first = fail_first or set()

    def render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        self.order.append(task.job_id)
        self.started.release()
        if task.job_id in self.fail_first:
            self.fail_first.discard(task.job_id)
            raise RenderError("a transient fault")
        while not self.gate.acquire(timeout=0.02):
            check_cancel(cancel)
        return super().render(task, progress, cancel)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "data" / "fanslymotion.sqlite3")
    yield db
    await db.close()


async def started(renderer: GatedRenderer) -> str:
    """Wait until the renderer got its next job; that job's id."""
    took = await asyncio.get_running_loop().run_in_executor(
        None, renderer.started.acquire, True, 30
    )
    assert took, "no job started"
    return renderer.order[-1]


async def wait_status(jobs: JobQueue, job_id: str, *statuses: str, limit: float = 60) -> Job:
    async with asyncio.timeout(limit), jobs.subscribe() as events:
        while (job := await jobs.get(job_id)).status not in statuses:
            await events.get()
    return job


async def positions(jobs: JobQueue, *job_ids: str) -> list[str]:
    """The given queued jobs sorted by the position the service reports for each."""
    reported = {}
    for job_id in job_ids:
        _, position, _ = await jobs.status_of(job_id)
        assert position is not None, job_id
        reported[job_id] = position
    assert sorted(reported.values()) == list(range(1, len(job_ids) + 1))
    return sorted(job_ids, key=reported.__getitem__)


def request(user_id: int) -> JobRequest:
    return JobRequest(user_id=user_id, duration=3, resolution="360p", motion_preset="pan_l")


async def test_job_during_a_failing_load_records_the_renderer_that_made_it(
    tmp_path: Path, store: Store
) -> None:
    settings = make_settings(tmp_path / "data", renderer="auto")
    candidate = SlowFailingSVD(settings)
    jobs = JobQueue(
        settings, store, LocalExecutor(settings, store, RenderWorker(settings, candidate))
    )
    await jobs.start()
    try:
        job, _ = await jobs.submit(request(1), photo_bytes())
        assert jobs.renderer is None and await jobs.eta_seconds(job) is None
        candidate.release.set()
        done = await wait_status(jobs, job.job_id, "completed", "failed")
        assert done.status == "completed" and done.renderer == "motion"
        info = video.probe(settings.data_dir / (done.output_path or ""))
        assert info.metadata.get("fanslymotion_renderer") == "motion"
        assert "renderer=motion" in info.metadata.get("comment", "")
        # `auto` is tagged as what it became for this landscape photo.
        assert info.metadata.get("fanslymotion_aspect") == "16:9"
        assert "aspect=16:9" in info.metadata.get("comment", "")
        metric = jobs.metrics.registry.get_sample_value(
            "fanslymotion_render_seconds_count",
            {"renderer": "motion", "resolution": "360p", "duration": "3"},
        )
        assert metric == 1.0
        health = await jobs.health()
        assert health["renderer"]["name"] == "motion"
        assert "weights are damaged" in health["renderer"]["reason"]
    finally:
        await jobs.stop()


async def test_two_users_interleave_and_positions_match_the_served_order(
    tmp_path: Path, store: Store
) -> None:
    settings = make_settings(tmp_path / "data", max_active_per_user=3)
    renderer = GatedRenderer(settings)
    jobs = JobQueue(
        settings, store, LocalExecutor(settings, store, RenderWorker(settings, renderer))
    )
    await jobs.start()
    try:
        await jobs.pause()
        a1, _ = await jobs.submit(request(1), photo_bytes())
        a2, _ = await jobs.submit(request(1), photo_bytes())
        a3, _ = await jobs.submit(request(1), photo_bytes())
        b1, _ = await jobs.submit(request(2), photo_bytes())
        c1, _ = await jobs.submit(request(3), photo_bytes())
        told = await positions(jobs, a1.job_id, a2.job_id, a3.job_id, b1.job_id, c1.job_id)
        # A later user's first job goes before an earlier user's second.
        assert told == [a1.job_id, b1.job_id, c1.job_id, a2.job_id, a3.job_id]
        _, _, etas = zip(*[await jobs.status_of(job_id) for job_id in told], strict=True)
        await jobs.resume()
        served = []
        for _ in told:
            served.append(await started(renderer))
            renderer.gate.release()
        assert served == told
        for job_id in told:
            assert (await wait_status(jobs, job_id, "completed")).status == "completed"
    finally:
        await jobs.stop()
    assert all(eta is None for eta in etas)  # paused: no ETA is promised


@pytest.mark.serial  # an ETA of an 8 s backoff
async def test_positions_hold_through_a_retry_backoff_and_a_restart(
    tmp_path: Path, store: Store
) -> None:
    settings = make_settings(tmp_path / "data", retry_backoff=8.0, max_retries=2)
    first = GatedRenderer(settings)
    jobs = JobQueue(settings, store, LocalExecutor(settings, store, RenderWorker(settings, first)))
    await jobs.start()
    await jobs.pause()
    a, _ = await jobs.submit(request(1), photo_bytes())
    b, _ = await jobs.submit(request(2), photo_bytes())
    c, _ = await jobs.submit(request(3), photo_bytes())
    first.fail_first = {a.job_id}
    assert await positions(jobs, a.job_id, b.job_id, c.job_id) == [a.job_id, b.job_id, c.job_id]
    await jobs.resume()
    assert await started(first) == a.job_id  # fails at once: 8 s of backoff
    assert await started(first) == b.job_id
    # A job waiting out its backoff is not counted ahead of one that can run now.
    assert await positions(jobs, c.job_id, a.job_id) == [c.job_id, a.job_id]
    _, _, eta_c = await jobs.status_of(c.job_id)
    _, _, eta_a = await jobs.status_of(a.job_id)
    assert eta_c is not None and eta_a is not None and eta_a >= 7.0 and eta_a > eta_c
    first.gate.release()
    assert await started(first) == c.job_id
    await jobs.pause()  # kept across the restart: the test reads positions before serving
    await jobs.stop()  # parks c (running) back in the queue; a keeps its backoff
    assert (await jobs.get(c.job_id)).status == "queued"

    second = GatedRenderer(settings)
    jobs = JobQueue(settings, store, LocalExecutor(settings, store, RenderWorker(settings, second)))
    await jobs.start()
    try:
        told = await positions(jobs, c.job_id, a.job_id)
        assert told == [c.job_id, a.job_id]
        await jobs.resume()
        for expected in told:
            assert await started(second) == expected
            second.gate.release()
        for job_id in (a.job_id, b.job_id, c.job_id):
            assert (await wait_status(jobs, job_id, "completed")).status == "completed"
        assert (await jobs.get(a.job_id)).attempts == 1
    finally:
        await jobs.stop()


class FailingMidPass(MotionRenderer):
    """Reports a pass of a multi-pass render, waits until the test saw it saved, then fails."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "test: fails in pass 2")
        self.go = threading.Event()

    def render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        progress(Progress(50.0, Phase.RENDERING, 2, 4))
        self.go.wait(30)
        raise RenderError("a transient fault in pass 2")


async def test_a_retried_job_waits_without_the_phase_of_its_failed_attempt(
    tmp_path: Path, store: Store
) -> None:
    settings = make_settings(tmp_path / "data", retry_backoff=60.0, progress_interval=0.01)
    renderer = FailingMidPass(settings)
    jobs = JobQueue(
        settings, store, LocalExecutor(settings, store, RenderWorker(settings, renderer))
    )
    await jobs.start()
    try:
        job, _ = await jobs.submit(request(1), photo_bytes())
        async with asyncio.timeout(30), jobs.subscribe() as events:
            while (row := await store.get_job(job.job_id)) is None or row.phase_steps != 4:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await events.get()
        assert row.phase == "rendering" and row.phase_step == 2
        renderer.go.set()
        queued = await wait_status(jobs, job.job_id, "queued")
        assert queued.attempts == 1 and queued.error == "a transient fault in pass 2"
        reopened = await Store.open(settings.db_path)  # the row itself, not a cached copy
        try:
            saved = await reopened.get_job(job.job_id)
        finally:
            await reopened.close()
        store_view = (queued.phase, queued.phase_step, queued.phase_steps, queued.progress)
        assert store_view == ("", 0, 0, 0.0)
        assert saved is not None
        assert (saved.phase, saved.phase_step, saved.phase_steps, saved.progress) == ("", 0, 0, 0.0)
    finally:
        await jobs.stop()
