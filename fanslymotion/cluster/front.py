"""The cluster's executor (`executor.Executor`): the front's job service (`queue.JobQueue`)
has its jobs rendered by `python -m fanslymotion worker`s through PostgreSQL and procrastinate.

PostgreSQL is the one store of record: the job service reads and writes the shared rows
(`store.PgStore`). Workers change them too; every change notifies `fm_jobs`, and a
`follow.Follower` turns each change into the job service's reports (started, progress,
settled), so the transitions, SSE and the bot's progress are the single box's. After a
restart or a lost connection the follower catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import StreamReader, web

from .. import credentials, motion, music, story_render, video
from ..config import Settings
from ..datadir import remove_quietly, story_inputs
from ..errors import (
    Conflict,
    FanslyError,
    InvalidParams,
    NotFound,
    PayloadTooLarge,
    RenderError,
    Unauthorized,
    Unavailable,
)
from ..executor import Reports, spec_of
from ..keyed_lock import KeyedLock
from ..loops import stop_tasks, wait_event
from ..metrics import Metrics
from ..renderer import MotionRenderer, Renderer, RenderSpec
from ..retry import Failed, Policy, next_state
from ..store import Job
from ..store.port import JobStore
from .db import Attempt, ClusterDB, Row
from .follow import Follower
from .outage import one_line
from .schema import MIGRATIONS

log = logging.getLogger(__name__)

_DB_ERRORS = (psycopg.Error, OSError)


class ClusterExecutor:
    """Renders a front's jobs on `python -m fanslymotion worker`s; `follower` reports back."""

    def __init__(
        self, settings: Settings, store: JobStore, db: ClusterDB, follower: Follower
    ) -> None:
        self.settings = settings
        self.store = store
        self.db = db
        self.follower = follower
        self._paused = False
        self._stopping = False
        self._dirty: set[str] = set()
        self._kick = asyncio.Event()
        self._halt = asyncio.Event()  # set by stop(): the loops end at their next look
        self._tasks: list[asyncio.Task[None]] = []
        self._workers: list[Row] = []
        self._uploads = KeyedLock()
        self._estimator_renderer = MotionRenderer(settings, "estimates for the queue")
        self._schema = 0  # the shared schema's version, once migrated

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self, reports: Reports) -> None:
        """Create or migrate the shared schema, take the jobs' state, then follow it."""
        self._schema = await self.db.migrate()
        if self._schema > len(MIGRATIONS):
            raise Unavailable(
                f"the cluster's PostgreSQL schema is version {self._schema}, newer than this"
                f" front's ({len(MIGRATIONS)}): run the version of the code that migrated it"
            )
        self.db.connected.set()  # the listener clears it when it loses the database
        if await self.db.paused():
            self._paused = True
            log.info("processing is paused (an admin paused it before the restart)")
        await self.follower.start(reports)
        self._workers = await self.db.workers(self.settings.worker_timeout)
        for name, loop in (
            ("listener", self._listen),
            ("follower", self._follow),
            ("upkeep", self._upkeep),
        ):
            self._tasks.append(asyncio.create_task(loop(), name=f"cluster {name}"))

    async def stop(self, grace: float) -> None:
        """Stop following the database; running jobs go on rendering on their workers."""
        self._stopping = True
        self._halt.set()
        self._kick.set()
        await stop_tasks(self._tasks, min(grace, 2.0), "cluster front")
        await self.db.close()

    async def ready(self) -> None:
        """The front loads no renderer: the workers do, and jobs wait for them in the queue."""

    async def admit(self) -> None:
        """503 at once while PostgreSQL is known to be away, before anything is written: a
        retry with the same Idempotency-Key later makes exactly one job."""
        await self._need_database()

    @property
    def paused(self) -> bool:
        return self._paused

    async def _need_database(self) -> None:
        """A 503 within a second while PostgreSQL is away (never the pool's wait): the
        listener's word, or, while it reconnects, one quick look."""
        if not await self.db.reachable():
            raise Unavailable("the job database is not reachable, try again", retry_after=5)

    async def set_paused(self, paused: bool) -> None:
        await self._need_database()
        try:
            await self.db.set_paused(paused)
        except _DB_ERRORS as exc:
            raise Unavailable(
                "the job database is not reachable, try again", retry_after=5
            ) from exc
        self._paused = paused

    # -- following the shared database ----------------------------------------------------------

    async def enqueued(self, job: Job) -> None:
        await self.follower.enqueued(job)

    async def _listen(self) -> None:
        """LISTEN for job changes; after every (re)connect, catch up with what was missed."""
        delay = 0.2
        while not self._stopping:
            try:
                conn = await psycopg.AsyncConnection.connect(self.db.url, autocommit=True)
                async with conn:
                    await conn.execute("LISTEN fm_jobs")
                    self.db.connected.set()
                    if delay > 0.2:
                        log.info("connection to PostgreSQL is back")
                    delay = 0.2
                    await self.follower.catch_up()
                    while not self._halt.is_set():  # a look at the flag at least every second
                        async for note in conn.notifies(timeout=1.0):
                            self._dirty.add(note.payload)
                            self._kick.set()
                    return
            except _DB_ERRORS as exc:
                if self.db.connected.is_set():
                    log.warning(
                        "lost the connection to PostgreSQL (%s); reconnecting", one_line(exc)
                    )
                self.db.connected.clear()
            await wait_event(self._halt, delay)
            delay = min(delay * 2, 2.0)  # back within 2 s of the database's return

    async def _follow(self) -> None:
        """Report the changed shared rows, in bursts."""
        while not self._stopping:
            await self._kick.wait()
            self._kick.clear()
            if self._halt.is_set():
                return
            ids, self._dirty = sorted(self._dirty), set()
            try:
                rows = await self.db.jobs(ids)
            except _DB_ERRORS as exc:
                # During an outage the listener's line says it; the catch-up follows.
                level = logging.WARNING if self.db.connected.is_set() else logging.DEBUG
                log.log(level, "cannot read changed jobs (%s); catching up later", one_line(exc))
                continue
            for row in rows:
                try:
                    await self.follower.apply(row)
                except Exception:
                    log.exception("job %s: could not follow its state", row.get("job_id"))

    async def _upkeep(self) -> None:
        """Each second: re-run the jobs of silent workers, refresh the fair priorities (a
        backoff may have ended) and the workers' list; now and then a prune.

        After the database was away, every heartbeat looks old: workers get a whole
        WORKER_TIMEOUT to beat again before anyone is judged silent."""
        tick = min(1.0, self.settings.worker_timeout / 4)
        rounds = 0
        up_since: float | None = None
        ranked = time.time()  # backoffs that end after this re-rank the queue
        while not await wait_event(self._halt, tick):
            rounds += 1
            try:
                self._workers = await self.db.workers(self.settings.worker_timeout)
                up_since = up_since if up_since is not None else time.monotonic()
                if time.monotonic() - up_since >= self.settings.worker_timeout:
                    await self._sweep()
                now = time.time()
                if await self.db.backoff_ended(ranked, now):
                    await self.db.rerank(now)
                ranked = now
                if rounds % 3600 == 1:
                    await self.db.prune(24.0)
            except _DB_ERRORS as exc:
                up_since = None
                log.debug("upkeep skipped: %s", exc)

    async def _sweep(self) -> None:
        for row in await self.db.sweep(self.settings.worker_timeout, self.settings.max_retries):
            log.warning("job %s: its worker went silent; now %s", row["job_id"], row["status"])

    # -- control --------------------------------------------------------------------------------

    async def cancel(self, job: Job) -> None:
        """Cancel in the shared database (a running job's worker is told to abort) and copy the
        outcome; a job that never reached PostgreSQL is left to the service."""
        await self._need_database()
        try:
            await self.db.cancel(job.job_id)
            row = await self.db.job(job.job_id)
        except _DB_ERRORS as exc:
            raise Unavailable(
                "the job database is not reachable, try again", retry_after=5
            ) from exc
        if row is not None:
            await self.follower.apply(row)

    # -- artifacts ------------------------------------------------------------------------------

    def check_token(self, request: web.Request) -> None:
        """401 unless the request carries the worker token (or, while workers move to a new
        one, WORKER_TOKEN_PREVIOUS)."""
        tokens = (self.settings.worker_token, self.settings.worker_token_previous)
        if not credentials.matches(credentials.bearer(request.headers), tokens):
            raise Unauthorized("a valid worker token is required")

    def check_worker(self, request: web.Request) -> Attempt:
        """The attempt a worker's request speaks for; 401 without the worker token."""
        self.check_token(request)
        try:
            attempt = int(request.query.get("attempt", ""))
        except ValueError:
            raise Conflict("attempt must be a number", code="stale_attempt") from None
        worker = request.headers.get("X-Worker", "")
        return Attempt(request.match_info["job_id"], attempt, worker)

    async def photo_for(self, fence: Attempt) -> Path:
        """The photo of the attempt that renders it now (409 for any other)."""
        await self._hold(fence)
        job = await self._job(fence.job_id)
        if job.input_path is None:
            raise NotFound("the photo of this job is gone")
        return self.settings.data_dir / job.input_path

    async def story_file_for(self, fence: Attempt, name: str) -> Path:
        """One of the other inputs of a story (`story_render.input_names`) to the attempt that
        renders it now; 404 for a name the story does not have, or a file that is gone."""
        await self._hold(fence)
        job = await self._job(fence.job_id)
        if not job.story or name not in story_render.input_names(job.story):
            raise NotFound("this job's story has no such file")
        path = story_inputs(self.settings.data_dir, job.job_id) / name
        if not await asyncio.get_running_loop().run_in_executor(None, path.is_file):
            raise NotFound(f"the story's {name} is gone")
        return path

    async def _hold(self, fence: Attempt) -> None:
        await self._need_database()  # a worker holding a video asks again soon: no pool wait
        try:
            holds = await self.db.holds(fence)
        except _DB_ERRORS as exc:
            raise Unavailable(
                "the job database is not reachable, try again", retry_after=2
            ) from exc
        if not holds:
            raise Conflict(
                "this attempt no longer renders the job (re-run elsewhere or cancelled)",
                code="stale_attempt",
            )

    async def accept_video(self, fence: Attempt, body: StreamReader, facts: dict[str, Any]) -> Job:
        """Stream a finished MP4 to a temporary name, then, if the attempt still holds the
        job, rename it into place and complete the job. Uploads of one job take turns, so a
        stale attempt can never replace the served file."""
        await self._hold(fence)
        loop = asyncio.get_running_loop()
        folder = self.settings.hot_dir
        partial = folder / f".{fence.job_id}.{fence.attempt}.upload.partial.mp4"
        final = folder / f"{fence.job_id}.mp4"
        try:
            size = await _receive(body, partial, self.settings.max_upload_bytes * 50)
            await self._check_video(fence, partial, facts)
            async with self._uploads.hold(fence.job_id):
                await self._hold(fence)
                await loop.run_in_executor(None, partial.replace, final)
                row = await self.db.complete(
                    fence, {**facts, "size_bytes": size, "output_path": f"hot/{fence.job_id}.mp4"}
                )
                if row is None:
                    await loop.run_in_executor(None, remove_quietly, final)
                    raise Conflict("this attempt no longer renders the job", code="stale_attempt")
                job = await self.follower.apply(row)
        finally:
            await loop.run_in_executor(None, remove_quietly, partial)
        if job is None:  # completed there, unknown here (a restore from another time)
            raise NotFound("the front has no row of this job")
        return job

    async def _check_video(self, fence: Attempt, path: Path, facts: dict[str, Any]) -> None:
        """Probe an upload before it completes the job: it decodes, and its frames, size and
        duration are the job's. Anything else is 422 to the worker, and the job is retried as
        a failed attempt (or fails when none is left)."""
        job = await self._job(fence.job_id)
        width, height = int(facts["width"]), int(facts["height"])
        problem = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(check_upload, path, spec_of(job), width, height)
        )
        short = motion.RESOLUTIONS.get(job.resolution)
        if problem is None and short is not None and min(width, height) != short:
            problem = f"it is {width}x{height}, not {job.resolution}"
        if problem is None:
            return
        log.warning(
            "job %s attempt=%d: upload from %s refused: %s",
            fence.job_id,
            fence.attempt,
            fence.worker,
            problem,
        )
        damaged = RenderError("the rendered video arrived damaged")
        after = next_state(Policy.of(self.settings), Failed(damaged), attempts=fence.attempt)
        try:
            if after.status == "queued":
                row = await self.db.requeue(
                    fence,
                    count_attempt=True,
                    not_before=time.time() + after.delay,
                    error=after.error,
                )
            else:
                row = await self.db.fail(fence, after.error or damaged.message)
        except _DB_ERRORS as exc:
            raise Unavailable(
                "the job database is not reachable, try again", retry_after=2
            ) from exc
        if row is not None:
            await self.follower.apply(row)
        raise InvalidParams(f"the video was refused: {problem}", code="bad_video")

    async def _job(self, job_id: str) -> Job:
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound("no such job")
        return job

    # -- views ----------------------------------------------------------------------------------

    @property
    def renderer(self) -> Renderer | None:
        return None  # the front renders nothing

    @property
    def renders_stories(self) -> bool:
        """A worker fetches a story's other photos, music and logo (`story_file_for`) and
        renders it as one box does (story_render)."""
        return True

    @property
    def renderer_name(self) -> str:
        names = [str(w["renderer"]) for w in self._workers if w["state"] in ("idle", "busy")]
        return max(set(names), key=names.count) if names else "motion"

    def serving(self) -> tuple[str, Callable[[RenderSpec], float]]:
        """The workers' renderer; motion's first guess before any measurement, none for SVD
        before its first render."""
        name = self.renderer_name
        if name == "motion":
            return name, self._estimator_renderer.estimate_seconds
        return name, lambda spec: math.nan

    def lanes(self) -> int:
        """One per live worker."""
        return sum(1 for w in self._workers if w["state"] in ("idle", "busy"))

    async def health(self) -> dict[str, Any]:
        """Within a second whatever PostgreSQL does: while the listener knows it is away, the
        last list of workers, without a wait on the pool."""
        workers, reachable = self._workers, False
        if self.db.connected.is_set():
            try:
                async with asyncio.timeout(1.0):
                    workers = await self.db.workers(self.settings.worker_timeout)
                reachable = True
            except (*_DB_ERRORS, TimeoutError):
                pass
        self._workers = workers
        live = [w for w in workers if w["state"] in ("idle", "busy")]
        return {
            "ok": reachable,
            "mode": "cluster",
            "database": "ok" if reachable else "unreachable",
            "renderer": {
                "name": self.renderer_name,
                "status": "ready" if live else "waiting",
                "reason": f"{len(live)} worker(s) live" if live else "no live worker",
            },
            "workers": [_worker_view(w) for w in workers],
            "cluster_schema": self._schema,
        }

    async def refresh_metrics(self, metrics: Metrics) -> None:
        """The workers' gauges: from PostgreSQL, or the last list while it is away (at once,
        never the pool's wait)."""
        if self.db.connected.is_set():
            with contextlib.suppress(*_DB_ERRORS, TimeoutError):
                async with asyncio.timeout(1.0):
                    self._workers = await self.db.workers(self.settings.worker_timeout)
        metrics.worker_up.clear()
        metrics.worker_busy.clear()
        metrics.worker_heartbeat_age.clear()
        for worker in self._workers:
            labels = (str(worker["name"]), str(worker["renderer"]))
            up = worker["state"] in ("idle", "busy", "loading")
            metrics.worker_up.labels(*labels).set(1 if up else 0)
            metrics.worker_busy.labels(*labels).set(1 if worker["job_id"] else 0)
            metrics.worker_heartbeat_age.labels(*labels).set(worker["heartbeat_age"])


def _worker_view(row: Row) -> dict[str, Any]:
    state = row["renderer_state"]
    return {
        "name": row["name"],
        "host": row["host"],
        "renderer": row["renderer"],
        "renderer_state": json.loads(state) if isinstance(state, str) else state,
        "state": row["state"],
        "job_id": row["job_id"],
        "jobs_done": row["jobs_done"],
        "version": row.get("version") or None,
        "heartbeat_age": round(float(row.get("heartbeat_age") or 0.0), 1),
        "last_heartbeat": row["last_heartbeat"],
    }


async def _receive(body: StreamReader, path: Path, limit: int) -> int:
    """Write an upload to `path` as it arrives (never whole in memory), fsynced; its size."""
    loop = asyncio.get_running_loop()
    handle = await loop.run_in_executor(None, path.open, "wb")
    size = 0
    try:
        async for chunk in body.iter_chunked(1 << 20):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge("the video is larger than any render can be")
            await loop.run_in_executor(None, handle.write, chunk)
        await loop.run_in_executor(None, handle.flush)
        await loop.run_in_executor(None, _fsync, handle.fileno())
    finally:
        await loop.run_in_executor(None, handle.close)
    return size


def check_upload(path: Path, spec: RenderSpec, width: int, height: int) -> str | None:
    """Why an upload is not the video of `spec` (None when it is): every frame (a story's
    whole timeline), and a story's music as long as the video within a frame."""
    problem = video.check_video(path, frames=spec.frames, fps=spec.fps, width=width, height=height)
    if problem is not None or spec.story is None or not spec.story.music:
        return problem
    try:
        seconds = music.audio_seconds(path)
    except FanslyError:
        return "it has no audio track, though the story has music"
    if abs(seconds - spec.frames / spec.fps) > 1.0 / spec.fps:
        return f"its audio lasts {seconds:.2f}s, not {spec.frames / spec.fps:.2f}s"
    return None


def _fsync(fd: int) -> None:
    os.fsync(fd)
