"""The job service: submission, the fair order's positions and ETAs, cancel, pause, events and
the retry policy's transitions, the same for both deployments.

Jobs wait as `queued` rows in the service's store; an executor (`executor.Executor`) renders
them and reports back: `dispatcher.LocalExecutor` on one box (the dispatcher and the GPU
thread), `cluster.front.ClusterExecutor` in a cluster (PostgreSQL, procrastinate, workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import shutil
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import checkpoints, datadir, intake, story_intake, webhook, webhook_guard
from .config import Settings
from .datadir import remove_quietly, write_atomic
from .errors import (
    Conflict,
    InsufficientStorage,
    InvalidParams,
    NotFound,
    TooManyJobs,
    Unavailable,
)
from .eta import Estimator, Kind, finish_of, first_free, rest_of
from .events import EventHub, JobEvent, is_closed
from .executor import CancelledByUser, Ending, Executor, Rendered, spec_of
from .limits import Limits
from .loops import stop_tasks, watch
from .metrics import Metrics
from .models import JobRequest
from .renderer import Preview, Renderer, RenderSpec
from .retry import Failed, Outcome, Policy, next_state
from .store import Job, NewJob, check_same_request
from .store.owners import OwnerTables
from .store.port import JobStore, OwnerStore
from .story import Story
from .story_intake import StoryFiles
from .vocabulary import TERMINAL, JobStatus, Phase, Progress

log = logging.getLogger(__name__)

__all__ = ["JobEvent", "JobQueue", "is_closed"]  # the events' names stay importable here


@dataclass
class _Live:
    """A job rendering now, as the service last heard of it."""

    job: Job
    started: float
    progress: Progress = field(default_factory=lambda: Progress(0.0, Phase.STARTING))
    last_saved: float = 0.0


class JobQueue:
    """The job service used by the HTTP API and the bot; `executor` renders its jobs."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        executor: Executor,
        metrics: Metrics | None = None,
        owners: OwnerStore | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.store = store
        self.executor = executor
        self.events = EventHub()
        self.estimator = Estimator()
        # The operator's tables (owners' rules, figures): the SQLite store's own, or given (a
        # cluster's front: cluster.owners.PgOwners).
        if owners is None and isinstance(store, OwnerTables):
            owners = store
        self.owners = owners
        self.limits = Limits(settings, self.owners) if self.owners is not None else None
        self._live: dict[str, _Live] = {}
        self._queue_length = 0  # as /health last counted it (a cluster's database may be away)
        self._stopping = False
        self._background: set[asyncio.Task[Any]] = set()

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def renderer(self) -> Renderer | None:
        """The renderer of this process once loaded (None while it loads, and on a front)."""
        return self.executor.renderer

    @property
    def renderer_name(self) -> str:
        """The name of the renderer that serves, or of the one loading."""
        return self.executor.renderer_name

    async def refresh_metrics(self) -> None:
        """Bring the gauges that are read on demand up to date (before a /metrics answer)."""
        for status, count in (await self.store.counts_by_status()).items():
            self.metrics.jobs.labels(status).set(count)
        self.metrics.queue_length.set(await self.store.count_jobs(status=JobStatus.QUEUED))
        await self.executor.refresh_metrics(self.metrics)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def paused(self) -> bool:
        return self.executor.paused

    async def start(self) -> None:
        """Learn the measured render times and start the executor. Raises `Unavailable` when
        RENDERER=svd cannot even be tried."""
        for folder in (self.settings.hot_dir, self.settings.inputs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for kind, seconds in await self.store.render_work():
            self.estimator.learn(Kind(*kind), seconds)
        await self.executor.start(self)
        queued = await self.store.count_jobs(status=JobStatus.QUEUED)
        log.info("job service started with %d queued job(s)", queued)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking jobs; the executor parks what it renders here back in the queue."""
        if self._stopping:
            return
        grace = self.settings.stop_grace if grace is None else grace
        self._stopping = True
        await self.executor.stop(grace)
        await stop_tasks(list(self._background), grace, "queue")
        self.events.close()

    async def wait_ready(self) -> None:
        """Return once the executor can render (the renderer loaded, or replaced by the motion
        renderer under `auto`)."""
        await self.executor.ready()

    async def pause(self) -> None:
        await self.executor.set_paused(True)
        log.info("processing paused")

    async def resume(self) -> None:
        await self.executor.set_paused(False)
        log.info("processing resumed")

    # -- submission and control ---------------------------------------------------------------

    async def submit(
        self,
        request: JobRequest,
        image: bytes,
        *,
        idempotency_key: str | None = None,
        request_digest: str | None = None,
        story_files: StoryFiles | None = None,
        exempt: bool = False,
    ) -> tuple[Job, bool]:
        """Validate, store the photo and queue a job. Returns (job, created). A repeat of an
        idempotency key returns its job when `request_digest` is the same, else 422. The
        owner's block and daily limit apply unless `exempt` (the operator's ADMIN_TOKEN)."""
        existing = await self._screen(request, idempotency_key, request_digest, exempt)
        if existing is not None:
            return existing, False
        await self._check_room(request)
        loop = asyncio.get_running_loop()
        check = functools.partial(
            intake.check_photo, self.settings, self.renderer_name, image, request
        )
        extension, shot, pixels = await loop.run_in_executor(None, check)
        story = await self._check_story(request, image, story_files)
        job_id = str(uuid.uuid4())
        relative = f"inputs/{job_id}{extension}"
        await loop.run_in_executor(None, write_atomic, self.settings.data_dir / relative, image)
        new = intake.new_row(
            self.settings, request, job_id, relative, idempotency_key, request_digest, shot
        )
        new = replace(new, photo_pixels=pixels)
        if story is not None:
            new = replace(new, story=story.to_json(new.fps))
            await loop.run_in_executor(
                None,
                story_intake.write,
                self.settings.data_dir,
                job_id,
                story_files or StoryFiles(),
            )
        job, created = await self._insert(new, relative, story)
        if not created:
            return job, False
        log.info(
            "job %s queued: user=%s %ss %s %s aspect=%s seed=%s via %s",
            job.job_id,
            job.user_id,
            job.duration,
            job.resolution,
            job.motion_preset,
            job.aspect,
            job.seed,
            job.source,
        )
        await self.executor.enqueued(job)
        self.events.publish(JobEvent("status", job, await self.eta_seconds(job)))
        return job, True

    async def _screen(
        self,
        request: JobRequest,
        idempotency_key: str | None,
        request_digest: str | None,
        exempt: bool,
    ) -> Job | None:
        """The checks before any work: taking jobs, the request, its webhook, a repeated
        idempotency key (its job comes back), the owner's limits and the caps."""
        if self._stopping:
            raise Unavailable(
                "the service is restarting, please try again in a minute", retry_after=30
            )
        await self.executor.admit()
        request.validate()
        webhook.check_subscription(self.settings, request.webhook_url, list(request.webhook_events))
        if request.webhook_url is not None:  # never inward (it is checked again at delivery)
            await webhook_guard.check_destination(self.settings, request.webhook_url)
        if idempotency_key is not None:
            existing = await self.store.job_by_idempotency_key(
                request.source, request.user_id, idempotency_key
            )
            if existing is not None:
                check_same_request(existing, request_digest)
                return existing
        if not exempt and self.limits is not None:
            await self.limits.check(request.source, request.user_id, request.duration)
        try:
            await self.store.check_caps(
                request.source,
                request.user_id,
                max_queued=self.settings.max_queued,
                max_active_per_user=self.settings.max_active_per_user,
            )
        except TooManyJobs as exc:
            exc.retry_after = await self._free_slot_in(exc, request.source, request.user_id)
            raise
        return None

    async def _check_room(self, request: JobRequest) -> None:
        """507 when the disk cannot take the job, its checkpoints included (SVD writes them
        as it goes)."""
        loop = asyncio.get_running_loop()
        free_mb = await loop.run_in_executor(None, self.free_disk_mb)
        spec = RenderSpec(
            request.duration,
            request.resolution,
            request.motion_preset,
            fps=request.fps or self.settings.fps,
        )
        scratch = self.renderer.scratch_bytes(spec) if self.renderer is not None else 0
        if free_mb - scratch / 2**20 < self.settings.min_free_mb:
            raise InsufficientStorage("the server is out of disk space, please try again later")

    async def _insert(self, new: NewJob, relative: str, story: Story | None) -> tuple[Job, bool]:
        """The row, or the job that won a race on the idempotency key; either way the files of
        a row that was not made are removed."""
        loop = asyncio.get_running_loop()
        try:
            job, created = await self.store.create_job(
                new,
                max_queued=self.settings.max_queued,
                max_active_per_user=self.settings.max_active_per_user,
            )
        except BaseException as exc:
            await loop.run_in_executor(None, remove_quietly, self.settings.data_dir / relative)
            await self._drop_story_files(new.job_id, story)
            if isinstance(exc, TooManyJobs):  # a race past the early check: the same answer
                exc.retry_after = await self._free_slot_in(exc, new.source, new.user_id)
            raise
        if not created:  # lost a race on the idempotency key: keep the first job's photo
            await loop.run_in_executor(None, remove_quietly, self.settings.data_dir / relative)
            await self._drop_story_files(new.job_id, story)
        return job, created

    async def _check_story(
        self, request: JobRequest, image: bytes, files: StoryFiles | None
    ) -> Story | None:
        """A story's photos, music and logo checked, each shot aimed (in an executor)."""
        if request.story is None:
            return None
        if not self.executor.renders_stories:
            raise InvalidParams(
                "stories are not rendered by this deployment", code="stories_unavailable"
            )
        check = functools.partial(
            story_intake.check,
            self.settings,
            request.story,
            image,
            files or StoryFiles(),
            resolution=request.resolution,
            aspect=request.aspect,
            fps=request.fps or self.settings.fps,
            renderer=self.renderer_name,
        )
        return await asyncio.get_running_loop().run_in_executor(None, check)

    async def _drop_story_files(self, job_id: str, story: Story | None) -> None:
        if story is not None:
            folder = datadir.story_inputs(self.settings.data_dir, job_id)
            remove = functools.partial(shutil.rmtree, folder, True)
            await asyncio.get_running_loop().run_in_executor(None, remove)

    async def _free_slot_in(self, refusal: TooManyJobs, source: str, user_id: int) -> int:
        """Seconds until the cap that refused a job frees a slot (at least 1): the next queued
        job's start for a full queue, the end of the user's first job for the per-user cap."""
        seconds: float | None
        if refusal.details.get("cap") == "queue":
            seconds = self._running_rest()
        else:
            mine = [
                job
                for job in await self.store.list_jobs(user_id=user_id, source=source, limit=100)
                if job.status in (JobStatus.QUEUED, JobStatus.PROCESSING)
            ]
            etas = [(await self.position_and_eta(job))[1] for job in mine]
            known = [eta for eta in etas if eta is not None]
            seconds = min(known) if known else None
        return max(1, math.ceil(seconds)) if seconds is not None else 30

    async def get(self, job_id: str) -> Job:
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound("no such job")
        return job

    async def cancel(self, job_id: str, *, user_id: int | None = None) -> Job:
        """Cancel a queued job at once, a running one at its next frame or step. Idempotent."""
        job = await self.get(job_id)
        if user_id is not None and job.user_id != user_id:
            raise NotFound("no such job")
        if job.terminal:
            return job  # cancelling again changes nothing
        await self.executor.cancel(job)  # a running job ends there first
        job = await self.get(job_id)
        if job.status == JobStatus.QUEUED:
            cancelled = await self.store.cancel_job(job_id, running=False)
            if cancelled is not None:
                self.settled(cancelled, "cancelled while queued")
                return cancelled
            job = await self.get(job_id)
            if job.status == JobStatus.PROCESSING:  # started in between
                await self.executor.cancel(job)
                job = await self.get(job_id)
        return job

    async def retry(self, job_id: str) -> Job:
        """An operator's retry: a failed job queued again as a new attempt of the same job,
        with its seed and photo. 409 when it is not failed or its photo is no longer kept."""
        job = await self.get(job_id)
        if job.status != JobStatus.FAILED:
            raise Conflict(
                f"only a failed job can be retried (this one is {job.status})", code="not_failed"
            )
        photo_path = self.settings.data_dir / job.input_path if job.input_path else None
        loop = asyncio.get_running_loop()
        if photo_path is None or not await loop.run_in_executor(None, photo_path.is_file):
            raise Conflict("the photo of this job is no longer kept", code="photo_gone")
        await self.executor.admit()
        again = await self.store.retry_failed(job_id)
        if again is None:  # retried by another request in between
            raise Conflict("the job is no longer failed", code="not_failed")
        log.info("job %s retried by an operator: attempt %d", job_id, again.attempts + 1)
        await self.executor.enqueued(again)
        self._transition(again, "retried by an operator")
        return again

    # -- views --------------------------------------------------------------------------------

    async def list_jobs(
        self,
        *,
        user_id: int | None,
        status: str | None,
        limit: int,
        offset: int,
        source: str | None = None,
    ) -> list[Job]:
        """The newest jobs first, of one user (of one source) and in one status when asked."""
        return await self.store.list_jobs(
            user_id=user_id, status=status, limit=limit, offset=offset, source=source
        )

    async def webhook_summary(self, job_id: str) -> dict[str, Any] | None:
        """How the job's webhook deliveries went; None without any."""
        return await self.store.webhook_summary(job_id)

    def preview_path(self, job_id: str) -> Path:
        """Where the live preview of a rendering job is (there only while one exists)."""
        return checkpoints.work_dir(self.settings.data_dir, job_id) / checkpoints.PREVIEW

    def running_job_id(self) -> str | None:
        return next(iter(self._live), None)

    def running_job(self, job_id: str) -> Job | None:
        """The row of the running job as committed when it started, if `job_id` is running.

        Nothing in it but progress changes while it runs (see `live_progress`), so status polls
        of the running job, the most frequent request, need no database round trip.
        """
        live = self._live.get(job_id)
        return live.job if live is not None else None

    def live_progress(self, job_id: str) -> Progress | None:
        live = self._live.get(job_id)
        return live.progress if live is not None else None

    def spec_of(self, job: Job) -> RenderSpec:
        return spec_of(job)

    def estimate_seconds(self, job: Job) -> float | None:
        """The learned render time of `job` on the serving renderer (its own first guess before
        any measurement); None while nothing serves or nothing is known."""
        serving = self.executor.serving()
        if serving is None:
            return None
        name, guess = serving
        kind = Kind(name, job.resolution, job.duration * job.fps, job.steps, job.photo_pixels or 0)
        seconds = self.estimator.estimate(kind, lambda: guess(spec_of(job)))
        return None if math.isnan(seconds) else seconds

    def _live_rests(self) -> dict[str, float | None]:
        """Seconds each running job still needs (None where unknown)."""
        now = time.monotonic()
        return {
            job_id: rest_of(live.progress, now - live.started, self.estimate_seconds(live.job))
            for job_id, live in self._live.items()
        }

    def _running_rest(self) -> float | None:
        """Seconds until a running job ends (0 with none running; None when unknown)."""
        return first_free(list(self._live_rests().values()))

    async def eta_seconds(self, job: Job) -> float | None:
        """Seconds until this job is done: the running jobs' rests, the jobs ahead, and its own."""
        return (await self.position_and_eta(job))[1]

    async def status_of(self, job_id: str) -> tuple[Job, int | None, float | None]:
        """(job, queue position, ETA) in at most one query: none for the running job."""
        job = self.running_job(job_id)
        if job is not None:
            return job, *(await self.position_and_eta(job))
        found, ahead = await self.store.job_and_queue_ahead(job_id)
        if found is None:
            raise NotFound("no such job")
        return found, *(await self.position_and_eta(found, ahead))

    async def position_and_eta(
        self, job: Job, ahead: list[Job] | None = None
    ) -> tuple[int | None, float | None]:
        """(queue position, ETA in seconds), with at most one query whatever the queue's length.

        `ahead`, when the caller has it, is the queued jobs served before this one, in the
        fair order. ETAs are a simulation of that order by as many lanes as render at once
        (`eta.finish_of`: each job starts when a lane frees, or when its retry backoff ends),
        so they never decrease down the queue.
        """
        if job.status in TERMINAL:
            return None, 0.0
        rests = self._live_rests()
        if job.status == JobStatus.PROCESSING:
            rest = rests.get(job.job_id)
            return None, None if rest is None else round(rest, 1)
        if ahead is None:
            ahead = await self.store.queued_ahead(job.job_id)
        if self.paused:
            return len(ahead) + 1, None
        now = time.time()
        queue = ((self.estimate_seconds(other), other.not_before - now) for other in (*ahead, job))
        finish = finish_of(self.executor.lanes(), list(rests.values()), queue)
        return len(ahead) + 1, None if finish is None else round(finish, 1)

    def free_disk_mb(self) -> float:
        return datadir.free_disk_mb(self.settings.data_dir)

    async def health(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        executor = await self.executor.health()
        ok = bool(executor.pop("ok"))
        if executor.get("database") != "unreachable":  # else the last count, at once
            self._queue_length = await self.store.count_jobs(status=JobStatus.QUEUED)
        return {
            "ok": not self._stopping and ok,
            **executor,
            "queue_length": self._queue_length,
            "running_job": self.running_job_id(),
            "running_jobs": sorted(self._live),
            "paused": self.paused,
            "stopping": self._stopping,
            "free_disk_mb": round(await loop.run_in_executor(None, self.free_disk_mb), 1),
        }

    # -- events -------------------------------------------------------------------------------

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[JobEvent]]:
        """Every JobEvent from now on, until the context ends or the queue stops."""
        return self.events.subscribe()

    def _transition(self, job: Job, note: str = "") -> None:
        """Log the committed transition (one line per job state) and tell listeners."""
        extra = f" ({note})" if note else ""
        log.info("job %s %s attempt=%d%s", job.job_id, job.status, job.attempts, extra)
        self.metrics.transitions.labels(job.status).inc()
        self.events.publish(JobEvent("status", job, 0.0 if job.terminal else None))
        if job.terminal:  # a parked or retried job keeps its checkpoints, an ended one not
            self._in_background(self._drop_work(job.job_id), f"job {job.job_id}: checkpoints")

    async def _drop_work(self, job_id: str) -> None:
        folder = checkpoints.work_dir(self.settings.data_dir, job_id)
        if await asyncio.get_running_loop().run_in_executor(None, checkpoints.remove_work, folder):
            log.info("job %s: checkpoints removed", job_id)

    # -- what the executor reports (executor.Reports) ---------------------------------------------

    def started(self, job: Job, note: str) -> None:
        self._live[job.job_id] = _Live(job, time.monotonic())
        self._transition(job, note)

    def progress(self, job: Job, report: Progress, updated_at: str | None = None) -> None:
        """Keep the live figures, tell listeners, persist at most every interval what the
        executor measured (a report read from the store, `updated_at` set, is there already).

        The percentage never goes back within an attempt."""
        live = self._live.get(job.job_id)
        if live is None:  # running since before this process started (a front's restart)
            live = self._live[job.job_id] = _Live(job, time.monotonic())
        percent = max(live.progress.percent, min(100.0, float(report.percent)))
        report = replace(report, percent=percent)
        if report == live.progress:
            return
        live.progress = report
        snapshot = live.job.with_progress(report, updated_at=updated_at)
        self.events.publish(JobEvent("progress", snapshot, self._running_rest()))
        now = time.monotonic()
        if updated_at is None and now - live.last_saved >= self.settings.progress_interval:
            live.last_saved = now
            self._in_background(
                self.store.set_progress(job.job_id, report), f"job {job.job_id}: progress"
            )

    def preview(self, job_id: str, preview: Preview) -> None:
        live = self._live.get(job_id)
        if live is not None:
            snapshot = live.job.with_progress(live.progress)
            self.events.publish(JobEvent("preview", snapshot, self._running_rest(), preview))

    async def finished(self, job: Job, ending: Ending, seconds: float) -> None:
        """Commit what follows an attempt: the video, the cancel, or the retry policy's answer."""
        self._live.pop(job.job_id, None)
        if isinstance(ending, Rendered):
            done = await self.store.complete_job(
                job.job_id,
                output_path=ending.output_path,
                width=ending.width,
                height=ending.height,
                frames=ending.frames,
                size_bytes=ending.size_bytes,
                render_seconds=seconds,
            )
            if done is not None:
                note = f"{seconds:.1f}s {ending.width}x{ending.height} {ending.frames} frames"
                self.settled(done, note)
        elif isinstance(ending, CancelledByUser):
            cancelled = await self.store.cancel_job(job.job_id, running=True)
            if cancelled is not None:
                self.settled(cancelled, f"cancelled after {seconds:.1f}s")
        else:
            await self._retry_or_fail(job, ending, seconds)

    def settled(self, job: Job, note: str) -> None:
        """A committed change out of `processing` (or of a queued job's end): listeners told,
        a render's time learned, an ended job's photo retired."""
        self._live.pop(job.job_id, None)
        self._transition(job, note)
        if job.status == JobStatus.COMPLETED and job.render_seconds is not None:
            renderer = job.renderer or "motion"
            self._learn(job, renderer, job.render_seconds)
            self.metrics.render_seconds.labels(renderer, job.resolution, str(job.duration)).observe(
                job.render_seconds
            )
        if job.terminal and job.status != JobStatus.FAILED:
            # A failed job keeps its photo so that an operator can retry it; housekeeping
            # retires it after ARCHIVE_AFTER_DAYS.
            self._cleanup_input(job)

    async def _retry_or_fail(self, job: Job, outcome: Outcome, seconds: float) -> None:
        """Apply the retry policy to the attempt that ended with `outcome`."""
        after = next_state(Policy.of(self.settings), outcome, attempts=job.attempts)
        if after.unexpected and isinstance(outcome, Failed):
            error = outcome.error
            log.error("job %s: unexpected %s: %s", job.job_id, type(error).__name__, error)
            log.debug("traceback", exc_info=error)
        if after.status == "queued":
            back = await self.store.requeue_job(
                job.job_id,
                count_attempt=after.counted,
                not_before=time.time() + after.delay if after.delay else 0.0,
                error=after.error,
            )
            if back is not None:
                note = (
                    f"failed after {seconds:.1f}s: {after.error}; retry in {after.delay:.0f}s"
                    if after.counted
                    else "stopped by shutdown, will resume"
                )
                self.settled(back, note)
            return
        failed = await self.store.fail_job(job.job_id, after.error or "failed")
        if failed is not None:
            self.settled(failed, f"after {seconds:.1f}s: {after.error}")

    def _learn(self, job: Job, renderer: str, seconds: float) -> None:
        self.estimator.learn(
            Kind(renderer, job.resolution, job.frames or 0, job.steps, job.photo_pixels or 0),
            seconds,
        )

    def _cleanup_input(self, job: Job) -> None:
        """Apply the input retention setting once a job has ended (in the background)."""
        self._in_background(
            datadir.retire_input(self.settings, self.store, job), f"job {job.job_id}: input"
        )

    def _in_background(self, work: Coroutine[Any, Any, Any], what: str) -> asyncio.Future[Any]:
        """Run `work` alongside; stop() waits for it, and a failure is logged, never lost."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        watch(task, what)
        return task
