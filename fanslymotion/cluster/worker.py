"""`python -m fanslymotion worker`: one process per GPU that renders a cluster's jobs.

It loads its renderer once (the same choice as the single box: SVD, or the camera-motion
renderer where SVD cannot run), then takes one job at a time from procrastinate. Procrastinate
keeps its heartbeat and delivers aborts; every write to a job row names the attempt, so a
worker that froze and came back after its job was re-run elsewhere is refused and drops it.
The photo (a story's other photos, music and logo too) comes from the front and the MP4 goes
back to it over HTTP (the worker token).

SIGTERM or SIGINT: stop now, the running job goes back to the queue uncounted (as on one box).
SIGUSR1: drain, i.e. finish the running job, take no new one, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import procrastinate
import psycopg
from procrastinate.job_context import JobContext

from .. import checkpoints, datadir, story_render, versions
from ..backends import select_renderer
from ..camera import Shot
from ..config import Settings
from ..errors import BadRequest, Cancelled, FanslyError, RenderError
from ..loops import stop_tasks, wait_event
from ..renderer import RenderResult, RenderSpec, RenderTask, RenderWorker
from ..retry import Failed, Outcome, Policy, TimedOut, next_state
from ..story import Story
from ..vocabulary import Phase, Progress
from .db import CONNECT_WAIT, POOL_WAIT, QUEUE, RECONNECT_FOR, TASK, Attempt, ClusterDB, Row
from .outage import Outage, connection_error, one_line
from .schema import MIGRATIONS
from .transfer import Away, BadToken, Refused, Rejected, check, chunks, retrying

log = logging.getLogger(__name__)

Reason = Literal["user", "shutdown", "timeout", "fenced"]
_DB_ERRORS = (psycopg.Error, OSError)
HOLD_RETRY = 1.0  # seconds between offers of a video the front cannot record yet


@dataclass
class _Current:
    fence: Attempt
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: Reason | None = None
    progress: Progress = field(default_factory=lambda: Progress(0.0, Phase.STARTING))
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # the progress writer stops
    held_since: float | None = None  # when the front first could not take the finished video

    def stop(self, reason: Reason) -> None:
        if self.reason is None:
            self.reason = reason
        self.cancel.set()


def default_name(settings: Settings) -> str:
    """host-gpuN from FANSLYMOTION_SVD_DEVICE (cuda:N), host-gpu0 otherwise."""
    device = settings.svd_device
    index = device.partition(":")[2] or "0"
    return f"{socket.gethostname()}-{'cpu' if device == 'cpu' else 'gpu' + index}"


def problems(settings: Settings) -> list[str]:
    """What a worker needs and lacks."""
    missing = []
    if settings.database_url is None:
        missing.append("FANSLYMOTION_DATABASE_URL (the cluster's PostgreSQL)")
    if not settings.front_url:
        missing.append("FANSLYMOTION_FRONT_URL (where the front answers, e.g. http://front:8000)")
    if settings.worker_token is None:
        missing.append("FANSLYMOTION_WORKER_TOKEN (the secret shared with the front)")
    return missing


class Worker:
    """One GPU worker: its renderer, its procrastinate worker, its heartbeat."""

    def __init__(self, settings: Settings, name: str, db: ClusterDB) -> None:
        self.settings = settings
        self.name = name
        self.db = db
        self.folder = settings.data_dir / "workers" / name
        self.render_worker = RenderWorker(
            settings, functools.partial(select_renderer, settings), stories=story_render.render
        )
        self.current: _Current | None = None
        self.state = "loading"
        self.exit_code = 0
        self._stopping = False
        self._draining = False
        self._pq_worker: int | None = None  # procrastinate's id of this worker, once known
        self._run: asyncio.Task[None] | None = None
        self._halt = asyncio.Event()  # set once the worker stops: the heartbeats end
        self._http: aiohttp.ClientSession | None = None
        self.outage = Outage(f"worker {name}")
        assert settings.worker_token is not None
        self._headers = {
            "Authorization": f"Bearer {settings.worker_token.get_secret_value()}",
            "X-Worker": name,
        }

    # -- life cycle ---------------------------------------------------------------------------

    async def run(self, *, signals: bool = True) -> int:
        """Serve until stopped; `signals` False leaves the loop's signals alone (a worker
        inside another program, as the tests run one beside their front)."""
        loop = asyncio.get_running_loop()
        if signals:
            loop.add_signal_handler(signal.SIGTERM, self.stop, "shutdown")
            loop.add_signal_handler(signal.SIGINT, self.stop, "shutdown")
            loop.add_signal_handler(signal.SIGUSR1, self.stop, None)
        schema = await self.db.migrate()
        if schema > len(MIGRATIONS):
            log.error(
                "worker %s refuses to start: the cluster's schema is version %d, this worker"
                " knows %d; update it to the front's version of the code",
                self.name,
                schema,
                len(MIGRATIONS),
            )
            return 2
        await self._clean_scratch()
        code = await loop.run_in_executor(None, versions.this)
        await self.db.register_worker(self.name, socket.gethostname(), os.getpid(), "loading", code)
        log.info("worker %s runs %s (cluster schema %d)", self.name, code, schema)
        # The token first: a refused worker must not spend minutes loading SVD for nothing.
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10))
        if not await self._token_accepted():
            await self._http.close()
            self.state = "refused"  # shown in /health for WORKER_TIMEOUT, then gone
            with contextlib.suppress(*_DB_ERRORS):
                await self.db.heartbeat(self.name, self.state, None, "none", "{}")
            return 2
        beats = asyncio.create_task(self._heartbeats(), name="heartbeats")
        self.render_worker.start()
        try:
            renderer = await self.render_worker.ready()
        except FanslyError as exc:
            log.error("worker %s: no renderer can serve: %s", self.name, exc.message)
            self.state = "failed"
            await self._beat()
            self._halt.set()
            await stop_tasks([beats], 2.0, "worker")
            await self._http.close()
            return 2
        log.info("worker %s ready: renderer %s", self.name, renderer.name)
        self.state = "idle"
        await self._beat()
        if signals:  # a process of its own: its loop's unhandled errors are ours
            loop.set_exception_handler(_quiet_stale_finish)
        try:
            await self._serve()
        finally:
            await self._http.close()
            self._halt.set()
            await stop_tasks([beats], 2.0, "worker")
            self.state = "stopped"
            if not self.outage.away:  # else it would only wait for the pool to give up
                with contextlib.suppress(*_DB_ERRORS):
                    await self._beat()
            await self.render_worker.stop(10)
        log.info("worker %s stopped", self.name)
        return self.exit_code

    async def _token_accepted(self) -> bool:
        """Ask the front whether it takes our token; a front not up yet is no answer (the
        worker may start first), a refusal is: no job could ever succeed here."""
        assert self._http is not None
        try:
            async with self._http.get(
                f"{self.settings.front_url}/internal/worker", headers=self._headers
            ) as resp:
                if resp.status in (401, 403):
                    log.error(
                        "worker %s: the front at %s refuses FANSLYMOTION_WORKER_TOKEN",
                        self.name,
                        self.settings.front_url,
                    )
                    return False
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("worker %s: the front is not reachable yet (%s)", self.name, exc)
        return True

    async def _clean_scratch(self) -> None:
        """After a kill: drop the inputs and partial videos left behind, and the checkpoints
        of jobs that no longer wait or run (a job that does may come back here and resume)."""
        loop = asyncio.get_running_loop()
        for sub in ("hot", "inputs"):
            for path in await loop.run_in_executor(None, _files, self.folder / sub):
                await loop.run_in_executor(None, datadir.remove_quietly, path)
        for name in await loop.run_in_executor(None, _names, self.folder / "inputs"):
            story = functools.partial(shutil.rmtree, self.folder / "inputs" / name, True)
            await loop.run_in_executor(None, story)  # a story's other inputs
        work = self.folder / "work"
        names = await loop.run_in_executor(None, _names, work)
        if names:
            active = {
                str(r["job_id"])
                for r in await self.db.jobs(names)
                if r["status"] in ("queued", "processing")
            }
            for name in set(names) - active:
                await loop.run_in_executor(None, checkpoints.remove_work, work / name)

    async def _serve(self) -> None:
        """Run procrastinate's worker; start it again after a lost database connection."""
        assert self.settings.database_url is not None
        url = self.settings.database_url.get_secret_value()
        while not self.stopping:
            # The pool's waits as short as ours: after an outage procrastinate's pool would
            # otherwise back off for minutes before the worker takes a job again.
            connector = procrastinate.PsycopgConnector(
                conninfo=url,
                timeout=POOL_WAIT,
                reconnect_timeout=RECONNECT_FOR,
                kwargs={"connect_timeout": CONNECT_WAIT},
            )
            app = procrastinate.App(connector=connector)
            app.task(name=TASK, queue=QUEUE, pass_context=True)(self._render)
            self._run = asyncio.current_task()
            try:
                async with app.open_async():
                    await app.run_worker_async(
                        queues=[QUEUE],
                        concurrency=1,
                        name=self.name,
                        fetch_job_polling_interval=self.settings.worker_poll,
                        abort_job_polling_interval=self.settings.worker_poll,
                        update_heartbeat_interval=self.settings.worker_heartbeat,
                        stalled_worker_timeout=self.settings.worker_timeout,
                        install_signal_handlers=False,
                        listen_notify=True,
                    )
            except asyncio.CancelledError:
                if not self.stopping:
                    raise
            except Exception as exc:  # a lost connection ends procrastinate's worker
                if connection_error(exc) is None:  # else the heartbeat's line says it
                    log.warning(
                        "worker %s: the queue stopped (%s); starting again",
                        self.name,
                        one_line(exc),
                    )
                await asyncio.sleep(1.0)
                await self._wait_for_database()
            finally:
                self._run = None

    async def _wait_for_database(self) -> None:
        """Until PostgreSQL answers (or the worker stops): a procrastinate pool opened while it
        is away waits its full 30 s even when the database returns meanwhile, and the worker
        would take no job for that long. The heartbeat logs the outage."""
        while not self.stopping:
            try:
                await self.db.ping()
                return
            except _DB_ERRORS:
                await asyncio.sleep(1.0)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self, reason: Reason | None) -> None:
        """SIGTERM/SIGINT: put the running job back and exit; SIGUSR1 (reason None): drain,
        i.e. stop once the running job has ended (heartbeats go on until then)."""
        if not self._stopping:
            log.info("worker %s %s", self.name, "stopping" if reason else "draining")
        if reason is None and self.current is not None:
            self._draining = True  # _render ends the worker after its job
            return
        self._stopping = True
        if reason is not None and self.current is not None:
            self.current.stop(reason)
        if self._run is not None:
            self._run.cancel()  # procrastinate stops fetching and waits for the running job

    async def _heartbeats(self) -> None:
        while not await wait_event(self._halt, self.settings.worker_heartbeat):
            try:
                await self._beat()
            except _DB_ERRORS as exc:
                self.outage.lost(exc)
            else:
                self.outage.back()

    async def _beat(self) -> None:
        """Our row in fm_workers, and procrastinate's heartbeat too: procrastinate stops its
        own when its loop ends (a lost connection, a stop) while a job may still render."""
        if self._pq_worker is not None and self.current is not None:
            await self.db.procrastinate_heartbeat(self._pq_worker)
        state = self.render_worker.state
        job = self.current.fence.job_id if self.current is not None else None
        await self.db.heartbeat(
            self.name, self.state, job, state.name, json.dumps(state.as_dict(), default=str)
        )

    # -- one job --------------------------------------------------------------------------------

    async def _render(self, context: JobContext, job_id: str) -> None:
        """procrastinate's task: one attempt at one job."""
        renderer = await self.render_worker.ready()
        assert context.job.id is not None
        self._pq_worker = context.job.worker_id
        row = await self.db.start(job_id, context.job.id, self.name, renderer.name)
        if row is None:
            log.info("job %s: no longer waiting for this attempt; skipped", job_id)
            return
        current = _Current(Attempt(job_id, int(row["attempts"]), self.name))
        self.current, self.state = current, "busy"
        log.info("job %s processing attempt=%d on %s", job_id, current.fence.attempt, self.name)
        with contextlib.suppress(*_DB_ERRORS):
            await self._beat()
        writer = asyncio.create_task(self._write_progress(current), name="progress")
        started = time.monotonic()
        keep = True
        try:
            keep = await self._attempt(row, current, started)
        except asyncio.CancelledError:
            keep = current.reason == "shutdown"
            raise
        finally:
            current.ended.set()
            current.dirty.set()
            await stop_tasks([writer], 2.0, "worker")
            self.current, self.state = None, "idle"
            if not self.outage.away:  # else the next heartbeat says it
                with contextlib.suppress(*_DB_ERRORS):
                    await self._beat()
            if self._draining:
                self.stop("shutdown")  # before procrastinate can fetch another job
            if not keep:  # checkpoints stay for a retry or a resume here
                await asyncio.get_running_loop().run_in_executor(
                    None, checkpoints.remove_work, checkpoints.work_dir(self.folder, job_id)
                )

    async def _attempt(self, row: Row, current: _Current, started: float) -> bool:
        """One attempt; True when the job may come back (a retry, a park): keep its work."""
        fence = current.fence
        folder = self.folder
        photo = folder / "inputs" / f"{fence.job_id}.img"
        story = datadir.story_inputs(folder, fence.job_id) if row.get("story") else None
        partial = folder / "hot" / f".{fence.job_id}.partial.mp4"
        loop = asyncio.get_running_loop()
        render: asyncio.Future[RenderResult] | None = None
        timer = loop.call_later(self.settings.job_timeout, current.stop, "timeout")
        try:
            await self._fetch_inputs(fence, row, photo, story)
            task = RenderTask(
                job_id=fence.job_id,
                spec=_spec(row),
                input_path=photo,
                output_path=partial,
                work_dir=checkpoints.work_dir(folder, fence.job_id),
                story_dir=story,
            )
            render = asyncio.ensure_future(
                self.render_worker.render(
                    task, lambda p: self._on_progress(current, p), current.cancel
                )
            )
            result = await asyncio.shield(render)
            timer.cancel()
            await self._upload(current, partial, result, time.monotonic() - started)
            with contextlib.suppress(*_DB_ERRORS):
                await self.db.worker_done(self.name)
            log.info(
                "job %s completed on %s in %.1fs",
                fence.job_id,
                self.name,
                time.monotonic() - started,
            )
            return False
        except asyncio.CancelledError:
            # procrastinate's abort: the front cancelled the job (or we are stopping).
            current.stop("user" if not self._stopping else "shutdown")
            if render is not None:
                await asyncio.wait([render])
                if not render.cancelled():
                    render.exception()  # observed: its outcome is the cancel handled here
            await self._settle_stop(current)
            raise
        except Refused:
            log.info(
                "job %s attempt=%d: the front refused it; dropped", fence.job_id, fence.attempt
            )
            return False
        except Rejected as exc:
            log.warning(
                "job %s attempt=%d: the front found the video damaged (%s); it retries the job",
                fence.job_id,
                fence.attempt,
                exc,
            )
            return False
        except BadToken as exc:
            log.error("worker %s: %s; stopping (the job goes back uncounted)", self.name, exc)
            await self.db.requeue(fence, count_attempt=False, not_before=0.0, error=None)
            self.exit_code = 2
            self.stop("shutdown")
            return True
        except Exception as exc:
            # A stop's reason wins over what it caused (a Ctrl-C also ends ffmpeg).
            stopped = isinstance(exc, Cancelled) or current.reason in ("user", "shutdown")
            if stopped and current.reason != "timeout":
                await self._settle_stop(current)
                return current.reason == "shutdown"
            return await self._failed(current, exc, time.monotonic() - started)
        finally:
            timer.cancel()
            for path in (photo, partial):
                await loop.run_in_executor(None, datadir.remove_quietly, path)
            if story is not None:
                await loop.run_in_executor(None, functools.partial(shutil.rmtree, story, True))

    async def _settle_stop(self, current: _Current) -> None:
        fence = current.fence
        if current.reason == "shutdown":
            try:
                if self.outage.away:
                    raise psycopg.OperationalError("PostgreSQL is away")  # no pool wait
                back = await self.db.requeue(fence, count_attempt=False, not_before=0.0, error=None)
            except _DB_ERRORS:
                log.warning(
                    "job %s: stopped while PostgreSQL is away; the front re-runs it once it "
                    "sees this worker gone",
                    fence.job_id,
                )
                return
            if back is not None:
                log.info(
                    "job %s queued (stopped by the worker's shutdown, will resume)", fence.job_id
                )
        elif current.reason == "fenced":
            log.info(
                "job %s attempt=%d: re-run elsewhere or cancelled; dropped",
                fence.job_id,
                fence.attempt,
            )
        else:
            log.info("job %s cancelled on %s", fence.job_id, self.name)

    async def _failed(self, current: _Current, exc: BaseException, seconds: float) -> bool:
        """A render error: the retry policy of both deployments decides. True when it will be
        retried."""
        fence = current.fence
        outcome: Outcome = TimedOut() if current.reason == "timeout" else Failed(exc)
        after = next_state(Policy.of(self.settings), outcome, attempts=fence.attempt)
        if after.unexpected:
            log.error("job %s: unexpected %s: %s", fence.job_id, type(exc).__name__, exc)
        if after.status == "queued":
            back = await self.db.requeue(
                fence, count_attempt=True, not_before=time.time() + after.delay, error=after.error
            )
            if back is not None:
                log.info(
                    "job %s queued after %.1fs: %s; retry in %.0fs",
                    fence.job_id,
                    seconds,
                    after.error,
                    after.delay,
                )
            return True
        if await self.db.fail(fence, after.error or "failed") is not None:
            log.info("job %s failed after %.1fs: %s", fence.job_id, seconds, after.error)
        return False

    def _on_progress(self, current: _Current, report: Progress) -> None:
        """On the loop: keep the latest report; the writer sends it at its pace."""
        percent = max(current.progress.percent, min(100.0, float(report.percent)))
        current.progress = Progress(percent, report.phase, report.step, report.steps, report.eta)
        current.dirty.set()

    async def _write_progress(self, current: _Current) -> None:
        """Send the latest progress at most every PROGRESS_INTERVAL; a refused write means
        the attempt lost the job (re-run elsewhere, cancelled): stop rendering it."""
        while not current.ended.is_set():
            await current.dirty.wait()
            current.dirty.clear()
            if current.ended.is_set():
                return
            try:
                if self.outage.away:
                    pass  # no pool wait for nothing: the front shows no progress meanwhile
                elif not await self.db.progress(current.fence, current.progress):
                    current.stop("fenced")
                    return
            except _DB_ERRORS as exc:
                log.debug("progress not saved: %s", exc)
            await wait_event(current.ended, self.settings.progress_interval)

    # -- artifacts ------------------------------------------------------------------------------

    def _url(self, fence: Attempt, what: str) -> str:
        return (
            f"{self.settings.front_url}/internal/jobs/{fence.job_id}/{what}?attempt={fence.attempt}"
        )

    async def _fetch_inputs(
        self, fence: Attempt, row: Row, photo: Path, story: Path | None
    ) -> None:
        """The photo to `photo`; a story's other photos, music and logo into `story`."""
        await self._fetch(fence, "photo", photo)
        if story is not None:
            for name in story_render.input_names(str(row["story"])):
                await self._fetch(fence, f"story/{name}", story / name)

    async def _fetch(self, fence: Attempt, what: str, path: Path) -> None:
        """Stream one input of the attempt (`photo`, or `story/<name>`) from the front to
        `path`, under a temporary name renamed once whole; retried while the front is away.
        A refusal (the file is gone) raises: the attempt fails and the retry policy decides."""
        assert self._http is not None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: path.parent.mkdir(parents=True, exist_ok=True))
        partial = path.with_name(f".{path.name}.partial")

        async def once() -> None:
            assert self._http is not None
            async with self._http.get(self._url(fence, what), headers=self._headers) as resp:
                if resp.status == 404 and what == "photo":
                    # Gone: as on one box, another try cannot bring it back.
                    raise BadRequest("the photo could not be read", code="photo_unreadable")
                try:
                    await check(resp)
                except RenderError as exc:  # e.g. the file is gone: say which
                    raise RenderError(f"could not fetch {what}: {exc.message}") from None
                handle = await loop.run_in_executor(None, partial.open, "wb")
                try:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        await loop.run_in_executor(None, handle.write, chunk)
                finally:
                    await loop.run_in_executor(None, handle.close)
            await loop.run_in_executor(None, partial.replace, path)

        try:
            await retrying(once, f"job {fence.job_id}: {what}", self.settings.worker_front_retry)
        finally:
            await loop.run_in_executor(None, datadir.remove_quietly, partial)

    async def _upload(
        self, current: _Current, path: Path, result: RenderResult, seconds: float
    ) -> None:
        """Stream the MP4 to the front, which completes the job if this attempt still holds.
        While the front cannot record it (503: its database is away) the video is kept and
        offered again, however long the outage: a finished render is never thrown away for
        it (a stop or a fence ends the wait)."""
        fence = current.fence
        headers = {
            **self._headers,
            "Content-Type": "video/mp4",
            "X-Width": str(result.width),
            "X-Height": str(result.height),
            "X-Frames": str(result.frames),
            "X-Render-Seconds": f"{seconds:.3f}",
        }

        async def once() -> None:
            assert self._http is not None
            async with self._http.put(
                self._url(fence, "video"), data=chunks(path), headers=headers
            ) as resp:
                await check(resp)

        async def hold(exc: Away) -> None:
            if current.held_since is None:
                current.held_since = time.monotonic()
                log.warning(
                    "job %s: rendered while the front cannot record it (%s); holding the video"
                    " until it can",
                    fence.job_id,
                    exc,
                )
            await asyncio.sleep(HOLD_RETRY)
            if current.cancel.is_set():
                raise Cancelled(current.reason or "stopped")

        await retrying(
            once, f"job {fence.job_id}: upload", self.settings.worker_front_retry, hold=hold
        )
        if current.held_since is not None:
            log.info(
                "job %s: the held video was delivered after %.1fs",
                fence.job_id,
                time.monotonic() - current.held_since,
            )


def _quiet_stale_finish(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """procrastinate cannot close a job the sweep already closed (this worker was silent and
    its job runs elsewhere): expected, so one info line instead of an error with a trace."""
    error = context.get("exception")
    cause = str(getattr(error, "__cause__", None) or error)
    if 'not in "doing"' in cause:
        log.info("procrastinate job already closed by the sweep: %s", cause.splitlines()[0])
        return
    if isinstance(error, BaseException) and (lost := connection_error(error)) is not None:
        # Its job's end could not be written (a stop while PostgreSQL is away): the sweep
        # settles that procrastinate job once the server is back.
        log.info("procrastinate could not record a job's end: %s", one_line(lost))
        return
    loop.default_exception_handler(context)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []


def _names(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []


def _spec(row: Row) -> RenderSpec:
    return RenderSpec(
        duration=int(row["duration"]),
        resolution=str(row["resolution"]),
        motion=str(row["motion_preset"]),
        aspect=str(row["aspect"]),
        strength=float(row["strength"]),
        seed=int(row["seed"]),
        fps=int(row["fps"]),
        shot=Shot.from_json(row.get("shot")),
        steps=int(row["steps"]),
        story=Story.from_json(str(row["story"])) if row.get("story") else None,
    )


async def run_worker(settings: Settings, name: str | None) -> int:
    """The `worker` command: exit code 2 for settings that cannot work."""
    missing = problems(settings)
    if missing:
        log.error("cannot start a worker: set %s", "; ".join(missing))
        return 2
    name = name or default_name(settings)
    logging.getLogger("procrastinate").setLevel(logging.WARNING)  # our own line per transition
    folder = settings.data_dir / "workers" / name
    loop = asyncio.get_running_loop()
    for sub in ("hot", "inputs"):
        await loop.run_in_executor(
            None, functools.partial((folder / sub).mkdir, parents=True, exist_ok=True)
        )
    try:
        lock = await loop.run_in_executor(None, datadir.DataFolderLock.acquire, folder)
    except FanslyError as exc:
        log.error("cannot start worker %s: %s", name, exc.message)
        return 2
    assert settings.database_url is not None
    try:
        db = await ClusterDB.open(settings.database_url.get_secret_value(), max_size=4)
    except Exception as exc:
        log.error("cannot reach PostgreSQL at FANSLYMOTION_DATABASE_URL: %s", exc)
        lock.release()
        return 2
    try:
        worker = Worker(settings, name, db)
        # procrastinate's loops log each failed query with a trace: the outage's one line.
        worker.outage.fold("procrastinate.worker", "procrastinate.utils")
        return await worker.run()
    finally:
        await db.close()
        lock.release()
