"""The job queue: submission, the dispatcher, the GPU thread, retries, cancel and recovery.

Jobs wait in an asyncio.Queue on the event loop. The dispatcher takes one at a time, marks it
`processing` in SQLite and hands it to the GPU thread through a thread-safe `queue.Queue`. The
thread owns the renderer; it reports progress and its outcome back to the loop only through
`loop.call_soon_threadsafe`, never touching asyncio objects itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue as thread_queue
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import checkpoints, motion, photo
from .config import Settings
from .errors import (
    Cancelled,
    Conflict,
    FanslyError,
    InsufficientStorage,
    InvalidParams,
    NotFound,
    RenderError,
    Unavailable,
)
from .metrics import Metrics
from .renderer import MotionRenderer, Preview, Renderer, RenderResult, RenderSpec, RenderTask
from .store import TERMINAL, Job, Store, parse_time

log = logging.getLogger(__name__)

RENDER_NICENESS = 10

StopReason = Literal["user", "shutdown", "timeout"]


@dataclass(frozen=True)
class JobRequest:
    """What a client asks for. `validate` enforces the product's ranges for API and bot alike."""

    user_id: int
    duration: int
    resolution: str
    motion_preset: str
    aspect: str = "auto"
    strength: float = 0.5
    seed: int | None = None
    steps: int | None = None
    source: Literal["api", "telegram"] = "api"
    chat_id: int | None = None
    message_id: int | None = None
    language: str | None = None

    def validate(self) -> None:
        if self.duration not in motion.DURATIONS:
            raise InvalidParams(f"duration must be one of {', '.join(map(str, motion.DURATIONS))}")
        if self.resolution not in motion.RESOLUTIONS:
            raise InvalidParams(f"resolution must be one of {', '.join(motion.RESOLUTIONS)}")
        if self.motion_preset not in motion.PRESETS:
            raise InvalidParams(f"motion_preset must be one of {', '.join(motion.PRESETS)}")
        if self.aspect not in motion.ASPECTS:
            raise InvalidParams(f"aspect must be one of {', '.join(motion.ASPECTS)}")
        if not 0.0 <= self.strength <= 1.0:
            raise InvalidParams("strength must be between 0 and 1")
        if self.seed is not None and not 0 <= self.seed < 2**32:
            raise InvalidParams("seed must be between 0 and 4294967295")
        if self.steps is not None and not 1 <= self.steps <= 100:
            raise InvalidParams("steps must be between 1 and 100")


@dataclass(frozen=True)
class JobEvent:
    """A change seen by listeners (SSE clients, the bot): a committed status, live progress,
    or a new live preview (`preview` set; SVD only)."""

    kind: Literal["status", "progress", "preview"]
    job: Job
    eta_seconds: float | None = None
    preview: Preview | None = None


@dataclass
class _Work:
    task: RenderTask
    progress: Callable[[float, str, float | None], None]
    cancel: threading.Event
    future: asyncio.Future[RenderResult]


@dataclass
class _Running:
    job: Job
    cancel: threading.Event
    started: float
    reason: StopReason | None = None
    progress: float = 0.0
    phase: str = "starting"
    eta: float | None = None
    last_saved: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class GPUThread:
    """The one thread that owns the renderer. Work comes in through a thread-safe queue."""

    def __init__(
        self, renderer: Renderer, loop: asyncio.AbstractEventLoop, settings: Settings
    ) -> None:
        self.renderer = renderer
        self._loop = loop
        self._settings = settings
        self._inbox: thread_queue.Queue[_Work | None] = thread_queue.Queue()
        self.loaded = threading.Event()
        self._thread = threading.Thread(target=self._main, name="gpu", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, work: _Work) -> None:
        self._inbox.put(work)

    def stop(self, timeout: float) -> None:
        """Ask the thread to end after its current work; wait up to `timeout` seconds."""
        self._inbox.put(None)
        self._thread.join(timeout)

    def _main(self) -> None:
        # Render below the event loop's CPU priority: on Linux nice is per thread and ffmpeg
        # inherits it, so on a CPU-bound box the API still answers promptly during a render.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RENDER_NICENESS)
        self._load()
        while True:
            work = self._inbox.get()
            if work is None:
                break
            try:
                result = self.renderer.render(work.task, work.progress, work.cancel)
            except Exception as exc:  # every job's failure goes back to the loop
                self._resolve(work.future, None, exc)
            else:
                self._resolve(work.future, result, None)
        with contextlib.suppress(Exception):
            self.renderer.close()

    def _load(self) -> None:
        if self.renderer.state.status == "ready":  # a restarted thread keeps the loaded model
            self.loaded.set()
            return
        try:
            self.renderer.load()
        except Exception as exc:
            self.renderer.state.status = "failed"
            self.renderer.state.reason = f"{type(exc).__name__}: {exc}"
        fallback = self._settings.renderer == "auto"  # RENDERER=svd: a failure is final
        if (
            self.renderer.state.status == "failed"
            and fallback
            and not isinstance(self.renderer, MotionRenderer)
        ):
            reason = f"{self.renderer.name} failed to load ({self.renderer.state.reason})"
            log.error("%s; falling back to the camera-motion renderer", reason)
            self.renderer = MotionRenderer(self._settings, reason)
            self.renderer.load()
        log.info(
            "renderer %s %s (%s)",
            self.renderer.name,
            self.renderer.state.status,
            self.renderer.state.reason,
        )
        self.loaded.set()

    def _resolve(
        self,
        future: asyncio.Future[RenderResult],
        result: RenderResult | None,
        exc: BaseException | None,
    ) -> None:
        def settle() -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                assert result is not None
                future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            self._loop.call_soon_threadsafe(settle)


class JobQueue:
    """The job service used by the HTTP API and the bot."""

    def __init__(
        self, settings: Settings, store: Store, renderer: Renderer, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.store = store
        self._initial_renderer = renderer
        self._pending: asyncio.Queue[str] = asyncio.Queue()
        self._gpu: GPUThread | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: _Running | None = None
        self._subscribers: set[asyncio.Queue[JobEvent]] = set()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._stopping = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._background: set[asyncio.Task[Any]] = set()
        # Measured render time / the renderer's own estimate, smoothed: corrects ETAs.
        self._eta_factor = 1.0

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def renderer(self) -> Renderer:
        return self._gpu.renderer if self._gpu is not None else self._initial_renderer

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for folder in (self.settings.hot_dir, self.settings.inputs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if await self.store.get_flag("paused") == "1":
            self._resumed.clear()
            log.info("processing is paused (an admin paused it before the restart)")
        for job_id in await self.store.recover():
            self._pending.put_nowait(job_id)
        self._gpu = GPUThread(self._initial_renderer, loop, self.settings)
        self._gpu.start()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="dispatcher")
        log.info("queue started with %d queued job(s)", self._pending.qsize())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking jobs, bring the running one back to `queued`, end the GPU thread."""
        if self._stopping:
            return
        self._stopping = True
        for timer in self._timers:
            timer.cancel()
        running = self._running
        if running is not None:
            running.reason = "shutdown"
            running.cancel.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(running.done.wait(), grace)
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        for task in list(self._background):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        if self._gpu is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._gpu.stop, grace)
        for subscriber in list(self._subscribers):
            subscriber.put_nowait(_CLOSED)

    async def wait_ready(self) -> None:
        """Wait until the renderer finished loading (or failed over to the motion renderer)."""
        assert self._gpu is not None
        await asyncio.get_running_loop().run_in_executor(None, self._gpu.loaded.wait)

    async def pause(self) -> None:
        await self.store.set_flag("paused", "1")
        self._resumed.clear()
        log.info("processing paused")

    async def resume(self) -> None:
        await self.store.set_flag("paused", "0")
        self._resumed.set()
        log.info("processing resumed")

    # -- submission and control ---------------------------------------------------------------

    async def submit(
        self, request: JobRequest, image: bytes, *, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """Validate, store the photo and queue a job. Returns (job, created)."""
        if self._stopping:
            raise Unavailable(
                "the service is restarting, please try again in a minute", retry_after=30
            )
        request.validate()
        if idempotency_key is not None:
            existing = await self.store.job_by_idempotency_key(request.user_id, idempotency_key)
            if existing is not None:
                return existing, False
        await self.store.check_caps(
            request.user_id,
            max_queued=self.settings.max_queued,
            max_active_per_user=self.settings.max_active_per_user,
        )
        loop = asyncio.get_running_loop()
        free_mb = await loop.run_in_executor(None, self.free_disk_mb)
        # Room for the job's checkpoints too (SVD writes them as it goes).
        scratch = self.renderer.scratch_bytes(
            RenderSpec(
                request.duration, request.resolution, request.motion_preset, fps=self.settings.fps
            )
        )
        if free_mb - scratch / 2**20 < self.settings.min_free_mb:
            raise InsufficientStorage("the server is out of disk space, please try again later")
        extension = await loop.run_in_executor(None, self._check_photo, image)
        job_id = str(uuid.uuid4())
        relative = f"inputs/{job_id}{extension}"
        await loop.run_in_executor(None, write_atomic, self.settings.data_dir / relative, image)
        values: dict[str, Any] = {
            "job_id": job_id,
            "user_id": request.user_id,
            "source": request.source,
            "chat_id": request.chat_id,
            "message_id": request.message_id,
            "language": request.language,
            "duration": request.duration,
            "resolution": request.resolution,
            "motion_preset": request.motion_preset,
            "aspect": request.aspect,
            "strength": request.strength,
            "seed": request.seed if request.seed is not None else secrets.randbelow(2**31),
            "steps": request.steps if request.steps is not None else self.settings.svd_steps,
            "fps": self.settings.fps,
            "input_path": relative,
            "idempotency_key": idempotency_key,
        }
        try:
            job, created = await self.store.create_job(
                values,
                max_queued=self.settings.max_queued,
                max_active_per_user=self.settings.max_active_per_user,
            )
        except BaseException:
            await loop.run_in_executor(None, remove_quietly, self.settings.data_dir / relative)
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
        self._pending.put_nowait(job.job_id)
        self._publish(JobEvent("status", job, await self.eta_seconds(job)))
        return job, True

    def _check_photo(self, image: bytes) -> str:
        """Decode the upload once (in an executor) so bad input fails now, not in the queue."""
        if len(image) > self.settings.max_upload_bytes:
            from .errors import PayloadTooLarge

            raise PayloadTooLarge(f"the photo is larger than {self.settings.max_upload_mb:g} MB")
        img = photo.load_photo(
            image, max_pixels=self.settings.max_pixels, min_side=self.settings.min_side
        )
        img.close()
        return ".img"

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

    def live_progress(self, job_id: str) -> tuple[float, str, float | None] | None:
        running = self._running
        if running is None or running.job.job_id != job_id:
            return None
        return running.progress, running.phase, running.eta

    def queue_length(self) -> int:
        return self._pending.qsize()

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
        )

    def estimate_seconds(self, job: Job) -> float:
        return self.renderer.estimate_seconds(self.spec_of(job)) * self._eta_factor

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

        `ahead`, when the caller has it, is the queued jobs served before this one.
        """
        if job.status in TERMINAL:
            return None, 0.0
        running = self._running
        if job.status == "processing":
            if running is None or running.job.job_id != job.job_id:
                return None, None
            if running.eta is not None:
                return None, round(running.eta, 1)
            elapsed = time.monotonic() - running.started
            return None, round(max(0.0, self.estimate_seconds(job) - elapsed), 1)
        if ahead is None:
            ahead = await self.store.queued_ahead(job.job_id)
        wait = sum(self.estimate_seconds(other) for other in ahead)
        if running is not None:
            wait += running.eta if running.eta is not None else self.estimate_seconds(running.job)
        return len(ahead) + 1, round(wait + self.estimate_seconds(job), 1)

    def free_disk_mb(self) -> float:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.settings.data_dir).free / 1024 / 1024

    async def health(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        renderer = self.renderer
        return {
            "ok": not self._stopping and renderer.state.status != "failed",
            "renderer": renderer.state.as_dict(),
            "queue_length": await self.store.count_jobs(status="queued"),
            "running_job": self.running_job_id(),
            "paused": self.paused,
            "stopping": self._stopping,
            "gpu_thread_alive": self._gpu is not None and self._gpu.is_alive(),
            "free_disk_mb": round(await loop.run_in_executor(None, self.free_disk_mb), 1),
        }

    # -- events -------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[JobEvent]]:
        """Every JobEvent from now on, until the context ends or the queue stops."""
        subscriber: asyncio.Queue[JobEvent] = asyncio.Queue(maxsize=10_000)
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)

    def _publish(self, event: JobEvent) -> None:
        for subscriber in list(self._subscribers):
            if subscriber.full() and event.kind == "progress":
                continue  # a slow listener may miss progress, never a status change
            with contextlib.suppress(asyncio.QueueFull):
                subscriber.put_nowait(event)

    def _transition(self, job: Job, note: str = "") -> None:
        """Log the committed transition (one line per job state) and tell listeners."""
        extra = f" ({note})" if note else ""
        log.info("job %s %s attempt=%d%s", job.job_id, job.status, job.attempts, extra)
        self.metrics.transitions.labels(job.status).inc()
        self._publish(JobEvent("status", job, 0.0 if job.terminal else None))
        if job.terminal:  # a parked or retried job keeps its checkpoints, an ended one not
            drop = asyncio.ensure_future(self._drop_work(job.job_id))
            self._background.add(drop)
            drop.add_done_callback(self._background.discard)

    async def _drop_work(self, job_id: str) -> None:
        folder = checkpoints.work_dir(self.settings.data_dir, job_id)
        if await asyncio.get_running_loop().run_in_executor(None, checkpoints.remove_work, folder):
            log.info("job %s: checkpoints removed", job_id)

    # -- the dispatcher -----------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            job_id = await self._pending.get()
            await self._resumed.wait()
            if self._stopping:
                return
            job = await self.store.get_job(job_id)
            if job is None or job.status != "queued":
                continue
            delay = job.not_before - time.time()
            if delay > 0:
                self._later(delay, job_id)
                continue
            try:
                await self._run(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop the queue
                log.exception("dispatcher error on job %s", job_id)

    def _later(self, delay: float, job_id: str) -> None:
        loop = asyncio.get_running_loop()

        def put() -> None:
            self._timers.discard(handle)
            if not self._stopping:
                self._pending.put_nowait(job_id)

        handle = loop.call_later(delay, put)
        self._timers.add(handle)

    async def _run(self, queued: Job) -> None:
        assert self._gpu is not None
        loop = asyncio.get_running_loop()
        started = await self.store.start_job(queued.job_id, self.renderer.name)
        if started is None:
            return
        running = _Running(started, threading.Event(), time.monotonic())
        self._running = running
        waited = _seconds_between(started.created_at, started.started_at)
        self._transition(started, f"renderer={self.renderer.name}, waited {waited:.1f}s")
        partial = self.settings.hot_dir / f".{started.job_id}.partial.mp4"
        task = RenderTask(
            job_id=started.job_id,
            spec=self.spec_of(started),
            input_path=self.settings.data_dir / (started.input_path or ""),
            output_path=partial,
            metadata=self._metadata(started),
            work_dir=checkpoints.work_dir(self.settings.data_dir, started.job_id),
            on_preview=lambda shown: self._on_preview_threadsafe(loop, running, shown),
        )

        def progress(percent: float, phase: str, eta: float | None) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(self._on_progress, running, percent, phase, eta)

        future: asyncio.Future[RenderResult] = loop.create_future()
        self._gpu.submit(_Work(task, progress, running.cancel, future))
        try:
            outcome = await self._wait(running, future)
            await self._finish(running, outcome, partial)
        finally:
            self._running = None
            running.done.set()
            # After a success the file was renamed already; after anything else it must go.
            await loop.run_in_executor(None, remove_quietly, partial)

    async def _wait(
        self, running: _Running, future: asyncio.Future[RenderResult]
    ) -> RenderResult | BaseException:
        """Wait for the GPU thread's answer, watching the job timeout and the thread's health."""
        assert self._gpu is not None
        while True:
            done, _ = await asyncio.wait({future}, timeout=0.5)
            if done:
                exc = future.exception()
                return exc if exc is not None else future.result()
            if not self._gpu.is_alive():
                # Only a BaseException (SystemExit and the like) gets past the thread's
                # handler. The job is retried on a fresh thread with the same renderer.
                log.error("the GPU thread died; starting a new one")
                self._gpu = GPUThread(self.renderer, asyncio.get_running_loop(), self.settings)
                self._gpu.start()
                return RenderError("the renderer stopped unexpectedly")
            elapsed = time.monotonic() - running.started
            if elapsed > self.settings.job_timeout and running.reason is None:
                log.warning(
                    "job %s over its %.0fs timeout", running.job.job_id, self.settings.job_timeout
                )
                running.reason = "timeout"
                running.cancel.set()

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
                self._learn(job, seconds)
                self.metrics.render_seconds.labels(
                    self.renderer.name, job.resolution, str(job.duration)
                ).observe(seconds)
                self._transition(
                    done, f"{seconds:.1f}s {outcome.width}x{outcome.height} {outcome.frames} frames"
                )
                self._cleanup_input(done)
            return
        if isinstance(outcome, Cancelled) or running.reason in ("user", "shutdown"):
            if running.reason == "shutdown":
                back = await self.store.requeue_job(job.job_id, count_attempt=False)
                if back is not None:
                    self._transition(back, "stopped by shutdown, will resume")
                return
            if running.reason == "user":
                cancelled = await self.store.cancel_job(job.job_id, running=True)
                if cancelled is not None:
                    self._transition(cancelled, f"cancelled after {seconds:.1f}s")
                    self._cleanup_input(cancelled)
                return
            outcome = RenderError(f"the render took longer than {self.settings.job_timeout:.0f} s")
        await self._failed(job, outcome, seconds)

    async def _failed(self, job: Job, exc: BaseException, seconds: float) -> None:
        if isinstance(exc, RenderError):
            retryable, message = exc.retryable, exc.message
        elif isinstance(exc, FanslyError):
            retryable, message = False, exc.message  # bad input: another try cannot help
        else:
            retryable, message = True, "internal render error"
            log.error("job %s: unexpected %s: %s", job.job_id, type(exc).__name__, exc)
            log.debug("traceback", exc_info=exc)
        if retryable and job.attempts < self.settings.max_retries:
            delay = self.settings.retry_backoff * (2**job.attempts)
            back = await self.store.requeue_job(
                job.job_id, count_attempt=True, not_before=time.time() + delay, error=message
            )
            if back is not None:
                self._transition(
                    back, f"failed after {seconds:.1f}s: {message}; retry in {delay:.0f}s"
                )
                self._later(delay, job.job_id)
            return
        failed = await self.store.fail_job(job.job_id, message)
        if failed is not None:
            self._transition(failed, f"after {seconds:.1f}s: {message}")
            self._cleanup_input(failed)

    def _on_progress(
        self, running: _Running, percent: float, phase: str, eta: float | None
    ) -> None:
        """On the loop: keep the live figures, tell listeners, persist at most every interval."""
        if running.done.is_set():
            return
        running.progress = max(running.progress, min(100.0, float(percent)))
        running.phase = phase
        running.eta = eta
        snapshot = Job(
            **{**asdict(running.job), "progress": round(running.progress, 1), "message": phase}
        )
        self._publish(JobEvent("progress", snapshot, eta))
        now = time.monotonic()
        if now - running.last_saved >= self.settings.progress_interval:
            running.last_saved = now
            save = asyncio.ensure_future(
                self.store.set_progress(running.job.job_id, round(running.progress, 1), phase)
            )
            self._background.add(save)
            save.add_done_callback(self._background.discard)

    def _on_preview_threadsafe(
        self, loop: asyncio.AbstractEventLoop, running: _Running, preview: Preview
    ) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            loop.call_soon_threadsafe(self._on_preview, running, preview)

    def _on_preview(self, running: _Running, preview: Preview) -> None:
        """On the loop: a new preview of the running job is in place."""
        if running.done.is_set():
            return
        snapshot = Job(
            **{
                **asdict(running.job),
                "progress": round(running.progress, 1),
                "message": running.phase,
            }
        )
        self._publish(JobEvent("preview", snapshot, running.eta, preview))

    def _learn(self, job: Job, seconds: float) -> None:
        guess = self.renderer.estimate_seconds(self.spec_of(job))
        if guess > 0:
            self._eta_factor = 0.7 * self._eta_factor + 0.3 * (seconds / guess)

    def _metadata(self, job: Job) -> dict[str, str]:
        return {
            "title": f"FanslyMotion {job.motion_preset} {job.duration}s {job.resolution}",
            "comment": (
                f"job_id={job.job_id} motion={job.motion_preset} duration={job.duration}"
                f" resolution={job.resolution} aspect={job.aspect} strength={job.strength:g}"
                f" seed={job.seed} steps={job.steps} fps={job.fps} renderer={self.renderer.name}"
            ),
            "fanslymotion_seed": str(job.seed),
            "fanslymotion_motion": job.motion_preset,
            "fanslymotion_renderer": self.renderer.name,
        }

    def _cleanup_input(self, job: Job) -> None:
        """Apply the input retention setting once a job has ended."""
        if job.input_path is None or self.settings.input_retention == "keep":
            return
        task = asyncio.ensure_future(self._retire_input(job))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retire_input(self, job: Job) -> None:
        assert job.input_path is not None
        loop = asyncio.get_running_loop()
        source = self.settings.data_dir / job.input_path
        if self.settings.input_retention == "archive":
            target = f"archive/inputs/{source.name}"
            await loop.run_in_executor(
                None, move_into_place, source, self.settings.data_dir / target
            )
            await self.store.set_paths(
                job.job_id,
                input_path=target,
                output_path=job.output_path,
                archived=bool(job.archived),
            )
        else:
            await loop.run_in_executor(None, remove_quietly, source)
            await self.store.set_paths(
                job.job_id,
                input_path=None,
                output_path=job.output_path,
                archived=bool(job.archived),
            )


class _Closed:
    """Marker put in subscriber queues when the service stops."""


_CLOSED: Any = _Closed()


def is_closed(event: object) -> bool:
    return event is _CLOSED


def _seconds_between(first: str | None, second: str | None) -> float:
    start, end = parse_time(first), parse_time(second)
    return (end - start).total_seconds() if start and end else 0.0


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, then rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def move_into_place(source: Path, target: Path) -> int:
    """Rename a finished file to its final name (same filesystem: atomic); returns its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)
    return target.stat().st_size


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def check_conflict(job: Job) -> None:
    if job.status != "completed" or job.output_path is None:
        raise Conflict(f"the video is not ready (job is {job.status})")
