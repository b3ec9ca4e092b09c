"""The job state machine: submission, dispatch, retries, cancel, events and ETAs.

Jobs wait as `queued` rows in SQLite; the store decides which one is served next (the fair
order in `Store.queue`), and an event on the loop wakes the dispatcher when something changes.
The dispatcher serves one job at a time through the `RenderWorker`, which owns the GPU thread
and the renderer; progress comes back on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from . import camera, checkpoints, datadir, photo, webhook
from .camera import Shot
from .config import Settings
from .datadir import move_into_place, remove_quietly, write_atomic
from .errors import (
    Cancelled,
    InsufficientStorage,
    NotFound,
    TooManyJobs,
    Unavailable,
)
from .eta import Estimator, Kind, finish_of, first_free, rest_of
from .events import EventHub, JobEvent, is_closed
from .loops import stop_tasks, wait_event, watch
from .metrics import Metrics
from .models import JobRequest
from .renderer import Preview, Renderer, RenderResult, RenderSpec, RenderTask, RenderWorker
from .retry import Failed, Outcome, Policy, Stopped, TimedOut, next_state
from .store import Job, NewJob, Store, check_same_request, parse_time
from .vocabulary import TERMINAL, JobStatus, Phase, Progress

log = logging.getLogger(__name__)

__all__ = ["JobEvent", "JobQueue", "is_closed"]  # the events' names stay importable here

StopReason = Literal["user", "shutdown", "timeout"]


@dataclass
class _Running:
    job: Job
    cancel: threading.Event
    started: float
    renderer: Renderer
    reason: StopReason | None = None
    progress: Progress = field(default_factory=lambda: Progress(0.0, Phase.STARTING))
    last_saved: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class JobQueue:
    """The job service used by the HTTP API and the bot."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        worker: RenderWorker | None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.store = store
        self._worker = worker  # None in cluster mode, where workers render (cluster.front)
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: _Running | None = None
        self.events = EventHub()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._stopping = False
        self._background: set[asyncio.Task[Any]] = set()
        self.estimator = Estimator()

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def worker(self) -> RenderWorker:
        """The GPU thread of this process (the single box only)."""
        assert self._worker is not None, "this queue renders on cluster workers"
        return self._worker

    @property
    def renderer(self) -> Renderer | None:
        """The renderer that serves, once loaded (None while it loads)."""
        return self.worker.renderer

    @property
    def renderer_name(self) -> str:
        """The name of the renderer that serves, or of the one loading."""
        return self.worker.state.name

    async def refresh_metrics(self) -> None:
        """Bring the gauges that are read on demand up to date (before a /metrics answer)."""
        for status, count in (await self.store.counts_by_status()).items():
            self.metrics.jobs.labels(status).set(count)
        self.metrics.queue_length.set(await self.store.count_jobs(status=JobStatus.QUEUED))
        renderer = self.renderer
        for kind, value in (renderer.memory_stats() if renderer else {}).items():
            self.metrics.gpu_memory.labels(kind).set(value)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    async def start(self) -> None:
        """Recover interrupted jobs, start the worker (which loads the renderer) and the
        dispatcher. Raises `Unavailable` when RENDERER=svd cannot even be tried."""
        for folder in (self.settings.hot_dir, self.settings.inputs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if await self.store.get_flag("paused") == "1":
            self._resumed.clear()
            log.info("processing is paused (an admin paused it before the restart)")
        for kind, seconds in await self.store.render_times():
            self.estimator.learn(Kind(*kind), seconds)
        _, failed = await self.store.recover(self.settings.max_retries)
        for job in failed:
            self._transition(job, job.error or "")
            self._cleanup_input(job)
        self.worker.start()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="dispatcher")
        queued = await self.store.count_jobs(status=JobStatus.QUEUED)
        log.info("queue started with %d queued job(s)", queued)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking jobs, bring the running one back to `queued`, end the GPU thread.

        The dispatcher ends on the flag after its job; past `grace` (STOP_GRACE) it is
        cancelled, and the job in hand is parked all the same (see `_run`), uncounted."""
        if self._stopping:
            return
        grace = self.settings.stop_grace if grace is None else grace
        self._stopping = True
        self._wake.set()
        running = self._running
        if running is not None:
            running.reason = "shutdown"
            running.cancel.set()
            if not await wait_event(running.done, grace):
                log.warning("job %s still rendering after %.1fs", running.job.job_id, grace)
        if self._dispatcher is not None:
            ended = running is None or running.done.is_set()
            await stop_tasks([self._dispatcher], 1.0 if ended else 0.0, "dispatcher")
        await stop_tasks(list(self._background), grace, "queue")
        await self.worker.stop(grace)
        self.events.close()

    async def wait_ready(self) -> Renderer:
        """The renderer once it is loaded (or replaced by the motion renderer under `auto`)."""
        return await self.worker.ready()

    async def pause(self) -> None:
        await self.store.set_flag("paused", "1")
        self._resumed.clear()
        log.info("processing paused")

    async def resume(self) -> None:
        await self.store.set_flag("paused", "0")
        self._resumed.set()
        self._wake.set()
        log.info("processing resumed")

    # -- submission and control ---------------------------------------------------------------

    async def submit(
        self,
        request: JobRequest,
        image: bytes,
        *,
        idempotency_key: str | None = None,
        request_digest: str | None = None,
    ) -> tuple[Job, bool]:
        """Validate, store the photo and queue a job. Returns (job, created). A repeat of an
        idempotency key returns its job when `request_digest` is the same, else 422."""
        if self._stopping:
            raise Unavailable(
                "the service is restarting, please try again in a minute", retry_after=30
            )
        request.validate()
        webhook.check_subscription(self.settings, request.webhook_url, list(request.webhook_events))
        if idempotency_key is not None:
            existing = await self.store.job_by_idempotency_key(request.user_id, idempotency_key)
            if existing is not None:
                check_same_request(existing, request_digest)
                return existing, False
        try:
            await self.store.check_caps(
                request.user_id,
                max_queued=self.settings.max_queued,
                max_active_per_user=self.settings.max_active_per_user,
            )
        except TooManyJobs as exc:
            exc.retry_after = await self._free_slot_in(exc, request.user_id)
            raise
        loop = asyncio.get_running_loop()
        free_mb = await loop.run_in_executor(None, self.free_disk_mb)
        # Room for the job's checkpoints too (SVD writes them as it goes).
        spec = RenderSpec(
            request.duration,
            request.resolution,
            request.motion_preset,
            fps=request.fps or self.settings.fps,
        )
        scratch = self.renderer.scratch_bytes(spec) if self.renderer is not None else 0
        if free_mb - scratch / 2**20 < self.settings.min_free_mb:
            raise InsufficientStorage("the server is out of disk space, please try again later")
        extension, shot = await loop.run_in_executor(None, self._check_photo, image, request)
        job_id = str(uuid.uuid4())
        relative = f"inputs/{job_id}{extension}"
        await loop.run_in_executor(None, write_atomic, self.settings.data_dir / relative, image)
        new = self._new_row(request, job_id, relative, idempotency_key, request_digest, shot)
        try:
            job, created = await self.store.create_job(
                new,
                max_queued=self.settings.max_queued,
                max_active_per_user=self.settings.max_active_per_user,
            )
        except BaseException as exc:
            await loop.run_in_executor(None, remove_quietly, self.settings.data_dir / relative)
            if isinstance(exc, TooManyJobs):  # a race past the early check: the same answer
                exc.retry_after = await self._free_slot_in(exc, request.user_id)
            raise
        if not created:  # lost a race on the idempotency key: keep the first job's photo
            await loop.run_in_executor(None, remove_quietly, self.settings.data_dir / relative)
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
        await self._enqueued(job)
        self._publish(JobEvent("status", job, await self.eta_seconds(job)))
        return job, True

    async def _enqueued(self, job: Job) -> None:
        """A new job is committed: wake the dispatcher."""
        self._wake.set()

    def _new_row(
        self,
        request: JobRequest,
        job_id: str,
        input_path: str,
        idempotency_key: str | None,
        request_digest: str | None,
        shot: Shot,
    ) -> NewJob:
        """The row of a validated request: a seed drawn and the service's steps and fps filled
        in where the request leaves them open."""
        hook_url, hook_events = webhook.check_subscription(
            self.settings, request.webhook_url, list(request.webhook_events)
        )
        return NewJob(
            job_id=job_id,
            user_id=request.user_id,
            source=request.source,
            chat_id=request.chat_id,
            message_id=request.message_id,
            language=request.language,
            duration=request.duration,
            resolution=request.resolution,
            motion_preset=request.motion_preset,
            aspect=request.aspect,
            strength=request.strength,
            seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
            steps=request.steps if request.steps is not None else self.settings.svd_steps,
            fps=request.fps or self.settings.fps,
            input_path=input_path,
            idempotency_key=idempotency_key,
            request_digest=request_digest,
            webhook_url=hook_url,
            webhook_events=json.dumps(hook_events) if hook_url else None,
            shot=shot.to_json(),
        )

    async def _free_slot_in(self, refusal: TooManyJobs, user_id: int) -> int:
        """Seconds until the cap that refused a job frees a slot (at least 1): the next queued
        job's start for a full queue, the end of the user's first job for the per-user cap."""
        seconds: float | None
        if refusal.details.get("cap") == "queue":
            seconds = self._running_rest()
        else:
            mine = [
                job
                for job in await self.store.list_jobs(user_id=user_id, limit=100)
                if job.status in (JobStatus.QUEUED, JobStatus.PROCESSING)
            ]
            etas = [(await self.position_and_eta(job))[1] for job in mine]
            known = [eta for eta in etas if eta is not None]
            seconds = min(known) if known else None
        return max(1, math.ceil(seconds)) if seconds is not None else 30

    def _check_photo(self, image: bytes, request: JobRequest) -> tuple[str, Shot]:
        """Decode the upload once (in an executor) so bad input fails now, not in the queue,
        and aim the shot at it (keyframes checked, the subject found, warnings)."""
        if len(image) > self.settings.max_upload_bytes:
            from .errors import PayloadTooLarge

            raise PayloadTooLarge(f"the photo is larger than {self.settings.max_upload_mb:g} MB")
        img = photo.load_photo(
            image, max_pixels=self.settings.max_pixels, min_side=self.settings.min_side
        )
        try:
            shot = camera.prepare(
                img,
                request.shot,
                preset=request.motion_preset,
                strength=request.strength,
                resolution=request.resolution,
                aspect=request.aspect,
                renderer=self.renderer_name,
            )
        finally:
            img.close()
        return ".img", shot

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
        if job.status == "queued":
            cancelled = await self.store.cancel_job(job_id, running=False)
            if cancelled is not None:
                self._transition(cancelled, "cancelled while queued")
                self._cleanup_input(cancelled)
                return cancelled
            job = await self.get(job_id)
        if job.status == "processing":
            running = self._running
            if running is not None and running.job.job_id == job_id:
                running.reason = "user"
                running.cancel.set()
                await running.done.wait()
            return await self.get(job_id)
        return job  # already terminal: cancelling again changes nothing

    # -- views --------------------------------------------------------------------------------

    async def list_jobs(
        self, *, user_id: int | None, status: str | None, limit: int, offset: int
    ) -> list[Job]:
        """The newest jobs first, of one user and in one status when asked."""
        return await self.store.list_jobs(
            user_id=user_id, status=status, limit=limit, offset=offset
        )

    async def webhook_summary(self, job_id: str) -> dict[str, Any] | None:
        """How the job's webhook deliveries went; None without any."""
        return await self.store.webhook_summary(job_id)

    def preview_path(self, job_id: str) -> Path:
        """Where the live preview of a rendering job is (there only while one exists)."""
        return checkpoints.work_dir(self.settings.data_dir, job_id) / checkpoints.PREVIEW

    def running_job_id(self) -> str | None:
        return self._running.job.job_id if self._running is not None else None

    def running_job(self, job_id: str) -> Job | None:
        """The row of the running job as committed when it started, if `job_id` is running.

        Nothing in it but progress changes while it runs (see `live_progress`), so status polls
        of the running job, the most frequent request, need no database round trip.
        """
        running = self._running
        if running is None or running.job.job_id != job_id or running.done.is_set():
            return None
        return running.job

    def live_progress(self, job_id: str) -> Progress | None:
        running = self._running
        if running is None or running.job.job_id != job_id:
            return None
        return running.progress

    def spec_of(self, job: Job) -> RenderSpec:
        return RenderSpec(
            duration=job.duration,
            resolution=job.resolution,
            motion=job.motion_preset,
            aspect=job.aspect,
            strength=job.strength,
            seed=job.seed,
            fps=job.fps,
            steps=job.steps,
            shot=Shot.from_json(job.shot),
        )

    def estimate_seconds(self, job: Job) -> float | None:
        """The learned render time of `job` on the serving renderer; None while it loads."""
        renderer = self.renderer
        if renderer is None:
            return None
        kind = Kind(renderer.name, job.resolution, job.duration * job.fps, job.steps)
        return self.estimator.estimate(kind, lambda: renderer.estimate_seconds(self.spec_of(job)))

    def _lanes(self) -> int:
        """How many jobs render at once: the one GPU thread here."""
        return 1

    def _live_rests(self) -> dict[str, float | None]:
        """Seconds each running job still needs (None where unknown)."""
        running = self._running
        if running is None:
            return {}
        elapsed = time.monotonic() - running.started
        estimate = self.estimate_seconds(running.job)
        return {running.job.job_id: rest_of(running.progress, elapsed, estimate)}

    def _running_rest(self) -> float | None:
        """Seconds until a running job ends (0 with none running; None when unknown)."""
        return first_free(list(self._live_rests().values()))

    async def eta_seconds(self, job: Job) -> float | None:
        """Seconds until this job is done: the running job's rest, the jobs ahead, and its own."""
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
        dispatcher's order. ETAs are a simulation of that order by as many lanes as render at
        once (`eta.finish_of`: each job starts when a lane frees, or when its retry backoff
        ends), so they never decrease down the queue.
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
        finish = finish_of(self._lanes(), list(rests.values()), queue)
        return len(ahead) + 1, None if finish is None else round(finish, 1)

    def free_disk_mb(self) -> float:
        return datadir.free_disk_mb(self.settings.data_dir)

    async def health(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        state = self.worker.state
        return {
            "ok": not self._stopping and state.status != "failed",
            "renderer": state.as_dict(),
            "queue_length": await self.store.count_jobs(status=JobStatus.QUEUED),
            "running_job": self.running_job_id(),
            "paused": self.paused,
            "stopping": self._stopping,
            "gpu_thread_alive": self.worker.is_alive(),
            "free_disk_mb": round(await loop.run_in_executor(None, self.free_disk_mb), 1),
        }

    # -- events -------------------------------------------------------------------------------

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[JobEvent]]:
        """Every JobEvent from now on, until the context ends or the queue stops."""
        return self.events.subscribe()

    def _publish(self, event: JobEvent) -> None:
        self.events.publish(event)

    def _transition(self, job: Job, note: str = "") -> None:
        """Log the committed transition (one line per job state) and tell listeners."""
        extra = f" ({note})" if note else ""
        log.info("job %s %s attempt=%d%s", job.job_id, job.status, job.attempts, extra)
        self.metrics.transitions.labels(job.status).inc()
        self._publish(JobEvent("status", job, 0.0 if job.terminal else None))
        if job.terminal:  # a parked or retried job keeps its checkpoints, an ended one not
            self._in_background(self._drop_work(job.job_id), f"job {job.job_id}: checkpoints")

    async def _drop_work(self, job_id: str) -> None:
        folder = checkpoints.work_dir(self.settings.data_dir, job_id)
        if await asyncio.get_running_loop().run_in_executor(None, checkpoints.remove_work, folder):
            log.info("job %s: checkpoints removed", job_id)

    # -- the dispatcher -----------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Serve jobs one at a time in the store's order, once the renderer is ready."""
        try:
            renderer = await self.worker.ready()
        except Exception as exc:  # RENDERER=svd that failed: Service.start refuses to start
            log.error("no renderer can serve (%s); jobs stay queued", exc)
            return
        while not self._stopping:
            self._wake.clear()  # before the query: a submit after it wakes the next wait
            if not self._resumed.is_set():  # paused: resume() and stop() wake it
                await self._wake.wait()
                continue
            job, wake_at = await self.store.next_job(time.time())
            if self._stopping or self.paused:
                continue
            if job is None:
                timeout = None if wake_at is None else max(0.0, wake_at - time.time())
                await wait_event(self._wake, timeout)
                continue
            try:
                await self._run(job, renderer)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop the queue
                log.exception("dispatcher error on job %s", job.job_id)

    async def _run(self, queued: Job, renderer: Renderer) -> None:
        loop = asyncio.get_running_loop()
        started = await self.store.start_job(queued.job_id, renderer.name)
        if started is None:
            return
        running = _Running(started, threading.Event(), time.monotonic(), renderer)
        self._running = running
        waited = _seconds_between(started.created_at, started.started_at)
        self._transition(started, f"renderer={renderer.name}, waited {waited:.1f}s")
        partial = self.settings.hot_dir / f".{started.job_id}.partial.mp4"
        task = RenderTask(
            job_id=started.job_id,
            spec=self.spec_of(started),
            input_path=self.settings.data_dir / (started.input_path or ""),
            output_path=partial,
            work_dir=checkpoints.work_dir(self.settings.data_dir, started.job_id),
            on_preview=lambda shown: self._on_preview_threadsafe(loop, running, shown),
        )

        def on_timeout() -> None:
            if running.reason is None:
                log.warning(
                    "job %s over its %.0fs timeout", started.job_id, self.settings.job_timeout
                )
                running.reason = "timeout"
                running.cancel.set()

        timer = loop.call_later(self.settings.job_timeout, on_timeout)
        try:
            outcome: RenderResult | BaseException
            try:
                outcome = await self.worker.render(
                    task, lambda report: self._on_progress(running, report), running.cancel
                )
            except asyncio.CancelledError:
                # Cancelled past the stop's grace: park the job anyway, shielded from the
                # cancel, so the next start does not count an attempt.
                running.reason = running.reason or "shutdown"
                running.cancel.set()
                park = self._in_background(
                    self._finish(running, Cancelled(), partial), f"job {started.job_id}: park"
                )
                await asyncio.shield(park)
                raise
            except Exception as exc:
                outcome = exc
            timer.cancel()
            await self._finish(running, outcome, partial)
        finally:
            timer.cancel()
            self._running = None
            running.done.set()
            # After a success the file was renamed already; after anything else it must go.
            await loop.run_in_executor(None, remove_quietly, partial)

    async def _finish(
        self, running: _Running, outcome: RenderResult | BaseException, partial: Path
    ) -> None:
        job = running.job
        seconds = time.monotonic() - running.started
        loop = asyncio.get_running_loop()
        if isinstance(outcome, RenderResult):
            final = f"hot/{job.job_id}.mp4"
            size = await loop.run_in_executor(
                None, move_into_place, partial, self.settings.data_dir / final
            )
            done = await self.store.complete_job(
                job.job_id,
                output_path=final,
                width=outcome.width,
                height=outcome.height,
                frames=outcome.frames,
                size_bytes=size,
                render_seconds=seconds,
            )
            if done is not None:
                self._learn(done, outcome.renderer, seconds)
                self.metrics.render_seconds.labels(
                    outcome.renderer, job.resolution, str(job.duration)
                ).observe(seconds)
                self._transition(
                    done, f"{seconds:.1f}s {outcome.width}x{outcome.height} {outcome.frames} frames"
                )
                self._cleanup_input(done)
            return
        if running.reason == "user":
            cancelled = await self.store.cancel_job(job.job_id, running=True)
            if cancelled is not None:
                self._transition(cancelled, f"cancelled after {seconds:.1f}s")
                self._cleanup_input(cancelled)
            return
        ended: Outcome
        if running.reason == "shutdown":
            ended = Stopped()
        elif isinstance(outcome, Cancelled):
            ended = TimedOut()
        else:
            ended = Failed(outcome)
        await self._retry_or_fail(job, ended, seconds)

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
                self._transition(back, note)
            return
        failed = await self.store.fail_job(job.job_id, after.error or "failed")
        if failed is not None:
            self._transition(failed, f"after {seconds:.1f}s: {after.error}")
            self._cleanup_input(failed)

    def _on_progress(self, running: _Running, report: Progress) -> None:
        """On the loop: keep the live figures, tell listeners, persist at most every interval.

        The percentage never goes back within an attempt."""
        if running.done.is_set():
            return
        percent = max(running.progress.percent, min(100.0, float(report.percent)))
        running.progress = replace(report, percent=percent)
        snapshot = running.job.with_progress(running.progress)
        self._publish(JobEvent("progress", snapshot, self._running_rest()))
        now = time.monotonic()
        if now - running.last_saved >= self.settings.progress_interval:
            running.last_saved = now
            self._in_background(
                self.store.set_progress(running.job.job_id, running.progress),
                f"job {running.job.job_id}: progress",
            )

    def _on_preview_threadsafe(
        self, loop: asyncio.AbstractEventLoop, running: _Running, preview: Preview
    ) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            loop.call_soon_threadsafe(self._on_preview, running, preview)

    def _on_preview(self, running: _Running, preview: Preview) -> None:
        """On the loop: a new preview of the running job is in place."""
        if running.done.is_set():
            return
        snapshot = running.job.with_progress(running.progress)
        self._publish(JobEvent("preview", snapshot, self._running_rest(), preview))

    def _learn(self, job: Job, renderer: str, seconds: float) -> None:
        self.estimator.learn(Kind(renderer, job.resolution, job.frames or 0, job.steps), seconds)

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


def _seconds_between(first: str | None, second: str | None) -> float:
    start, end = parse_time(first), parse_time(second)
    return (end - start).total_seconds() if start and end else 0.0
