"""The single box's executor: a dispatcher that serves the store's queue one job at a time, in
the fair order (`Store.next_job`), through the `RenderWorker`, which owns the GPU thread and the
renderer. Starts, progress, previews and endings go back to the job service as `Reports`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import checkpoints
from .config import Settings
from .datadir import move_into_place, remove_quietly, story_inputs
from .errors import Cancelled
from .executor import CancelledByUser, Ending, Rendered, Reports, spec_of
from .loops import stop_tasks, wait_event, watch
from .metrics import Metrics
from .renderer import Preview, Renderer, RenderResult, RenderSpec, RenderTask, RenderWorker
from .retry import Failed, Stopped, TimedOut
from .store import Job, Store, parse_time
from .vocabulary import Progress

log = logging.getLogger(__name__)

StopReason = Literal["user", "shutdown", "timeout"]


@dataclass
class _Running:
    job: Job
    cancel: threading.Event
    started: float
    reason: StopReason | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class LocalExecutor:
    """Renders on this process's GPU thread, one job at a time."""

    def __init__(self, settings: Settings, store: Store, worker: RenderWorker) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self._reports: Reports | None = None
        self._wake = asyncio.Event()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._stopping = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: _Running | None = None
        self._parking: set[asyncio.Task[None]] = set()

    # -- the port -------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    @property
    def renderer(self) -> Renderer | None:
        return self.worker.renderer

    @property
    def renders_stories(self) -> bool:
        """Whether a story job can render here (issue 25; the job service asks at submit)."""
        return self.worker.renders_stories

    @property
    def renderer_name(self) -> str:
        return self.worker.state.name

    def serving(self) -> tuple[str, Callable[[RenderSpec], float]] | None:
        renderer = self.worker.renderer
        return None if renderer is None else (renderer.name, renderer.estimate_seconds)

    def lanes(self) -> int:
        return 1  # the one GPU thread

    async def start(self, reports: Reports) -> None:
        """Park or fail what a crash interrupted, start the GPU thread (which loads the
        renderer) and the dispatcher."""
        self._reports = reports
        if await self.store.get_flag("paused") == "1":
            self._resumed.clear()
            log.info("processing is paused (an admin paused it before the restart)")
        _, failed = await self.store.recover(self.settings.max_retries)
        for job in failed:
            reports.settled(job, job.error or "")
        self.worker.start()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="dispatcher")

    async def stop(self, grace: float) -> None:
        """Bring the running job back to `queued`, end the dispatcher and the GPU thread.

        Past `grace` (STOP_GRACE) the dispatcher is cancelled, and the job in hand is parked
        all the same (see `_run`), uncounted."""
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
        await stop_tasks(list(self._parking), grace, "dispatcher")
        await self.worker.stop(grace)

    async def ready(self) -> None:
        await self.worker.ready()

    async def admit(self) -> None:
        """The GPU thread's queue is SQLite's: always open while the service runs."""

    async def enqueued(self, job: Job) -> None:
        self._wake.set()

    async def cancel(self, job: Job) -> None:
        """A queued job needs nothing here (the service ends its row); the running one stops
        at its next frame or step."""
        running = self._running
        if running is None or running.job.job_id != job.job_id:
            return
        running.reason = "user"
        running.cancel.set()
        await running.done.wait()

    async def set_paused(self, paused: bool) -> None:
        await self.store.set_flag("paused", "1" if paused else "0")
        if paused:
            self._resumed.clear()
        else:
            self._resumed.set()
            self._wake.set()

    async def health(self) -> dict[str, Any]:
        state = self.worker.state
        return {
            "ok": state.status != "failed",
            "renderer": state.as_dict(),
            "gpu_thread_alive": self.worker.is_alive(),
        }

    async def refresh_metrics(self, metrics: Metrics) -> None:
        renderer = self.worker.renderer
        for kind, value in (renderer.memory_stats() if renderer else {}).items():
            metrics.gpu_memory.labels(kind).set(value)

    # -- the dispatcher -------------------------------------------------------------------------

    @property
    def reports(self) -> Reports:
        assert self._reports is not None, "start() first"
        return self._reports

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
        running = _Running(started, threading.Event(), time.monotonic())
        self._running = running
        waited = _seconds_between(started.created_at, started.started_at)
        self.reports.started(started, f"renderer={renderer.name}, waited {waited:.1f}s")
        partial = self.settings.hot_dir / f".{started.job_id}.partial.mp4"
        task = RenderTask(
            job_id=started.job_id,
            spec=spec_of(started),
            input_path=self.settings.data_dir / (started.input_path or ""),
            output_path=partial,
            work_dir=checkpoints.work_dir(self.settings.data_dir, started.job_id),
            on_preview=lambda shown: self._preview_threadsafe(loop, running, shown),
            story_dir=story_inputs(self.settings.data_dir, started.job_id)
            if started.story
            else None,
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
                    task, lambda report: self._progress(running, report), running.cancel
                )
            except asyncio.CancelledError:
                # Cancelled past the stop's grace: park the job anyway, shielded from the
                # cancel, so the next start does not count an attempt.
                running.reason = running.reason or "shutdown"
                running.cancel.set()
                park = asyncio.ensure_future(self._finish(running, Cancelled(), partial))
                self._parking.add(park)
                park.add_done_callback(self._parking.discard)
                watch(park, f"job {started.job_id}: park")
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
        """Name how the attempt ended (the file moved into place after a success)."""
        job = running.job
        seconds = time.monotonic() - running.started
        ending: Ending
        if isinstance(outcome, RenderResult):
            final = f"hot/{job.job_id}.mp4"
            try:
                size = await asyncio.get_running_loop().run_in_executor(
                    None, move_into_place, partial, self.settings.data_dir / final
                )
            except OSError as exc:  # the video made but not kept: a failed attempt
                ending = Failed(exc)
            else:
                ending = Rendered(final, outcome.width, outcome.height, outcome.frames, size)
        elif running.reason == "user":
            ending = CancelledByUser()
        elif running.reason == "shutdown":
            ending = Stopped()
        elif isinstance(outcome, Cancelled):
            ending = TimedOut()
        else:
            ending = Failed(outcome)
        await self.reports.finished(job, ending, seconds)

    def _progress(self, running: _Running, report: Progress) -> None:
        if not running.done.is_set():
            self.reports.progress(running.job, report)

    def _preview_threadsafe(
        self, loop: asyncio.AbstractEventLoop, running: _Running, preview: Preview
    ) -> None:
        def on_loop() -> None:
            if not running.done.is_set():
                self.reports.preview(running.job.job_id, preview)

        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            loop.call_soon_threadsafe(on_loop)


def _seconds_between(first: str | None, second: str | None) -> float:
    start, end = parse_time(first), parse_time(second)
    return (end - start).total_seconds() if start and end else 0.0
