"""The job store: SQLite through aiosqlite. All of the service's SQL lives in this module.

Every state change is one short transaction, guarded in SQL (`UPDATE ... WHERE status = ...`)
and committed before the caller reports it. One connection serves the process; writes are
serialised with a lock so a check-then-insert (caps, idempotency) is atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import astuple, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from .errors import TooManyJobs
from .models import ACTIVE, TERMINAL, JobStatus, Progress

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["ACTIVE", "TERMINAL", "Delivery", "Job", "JobStatus", "Store"]

# Version 1 of the schema. Later versions append to MIGRATIONS; `PRAGMA user_version` says
# how many of them a database has had.
SCHEMA = """
CREATE TABLE jobs (
    job_id              TEXT PRIMARY KEY,
    user_id             INTEGER NOT NULL,
    source              TEXT NOT NULL CHECK (source IN ('api', 'telegram')),
    chat_id             INTEGER,
    message_id          INTEGER,
    progress_message_id INTEGER,
    language            TEXT,
    duration            INTEGER NOT NULL,
    resolution          TEXT NOT NULL,
    motion_preset       TEXT NOT NULL,
    aspect              TEXT NOT NULL,
    strength            REAL NOT NULL,
    seed                INTEGER NOT NULL,
    steps               INTEGER NOT NULL,
    fps                 INTEGER NOT NULL,
    status              TEXT NOT NULL
                        CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    progress            REAL NOT NULL DEFAULT 0,
    message             TEXT NOT NULL DEFAULT '',
    error               TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    renderer            TEXT,
    input_path          TEXT,
    output_path         TEXT,
    width               INTEGER,
    height              INTEGER,
    frames              INTEGER,
    size_bytes          INTEGER,
    render_seconds      REAL,
    idempotency_key     TEXT,
    not_before          REAL NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    started_at          TEXT,
    completed_at        TEXT,
    updated_at          TEXT NOT NULL,
    archived            INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX jobs_user ON jobs (user_id, created_at);

-- Outbox of videos to send through Telegram, written in the same transaction that completes
-- the job, so a finished video is delivered even if the process dies right after.
-- pending -> sending (committed before the upload) -> sent | pending (retry) | undeliverable.
-- A row still `sending` at start means the process died mid-upload: Telegram may or may not
-- have the video, and it has no idempotency key, so the row becomes `interrupted` and the user
-- is offered a button instead of getting a possible second copy.
CREATE TABLE deliveries (
    job_id          TEXT PRIMARY KEY REFERENCES jobs (job_id),
    chat_id         INTEGER NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'undeliverable', 'interrupted')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    file_id         TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);

-- aiogram's FSM: one row per (bot, chat, user, thread...) key.
CREATE TABLE fsm (
    key   TEXT PRIMARY KEY,
    state TEXT,
    data  TEXT NOT NULL DEFAULT '{}'
);

-- Per-user preferences of the bot (language) and whether the user blocked it.
CREATE TABLE users (
    user_id  INTEGER PRIMARY KEY,
    language TEXT,
    blocked  INTEGER NOT NULL DEFAULT 0
);

-- Small process-wide flags that must survive a restart (e.g. processing paused by an admin).
CREATE TABLE flags (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Version 2: the progress phase as the renderer reported it (a `Phase` value and its pass),
# so the bot and the page word it in the user's language rather than parsing `message`; and
# how many times the process died while rendering the job (the crash-loop guard's count).
PHASE_COLUMNS = """
ALTER TABLE jobs ADD COLUMN phase TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN phase_step INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN phase_steps INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
"""

# The changing fields of a job at the moment of an event, kept with the event so a late
# delivery still tells what happened then (the API renders them as the status body).
_SNAPSHOT = """json_object('status', NEW.status, 'progress', NEW.progress, 'message', NEW.message,
    'phase', NEW.phase, 'phase_step', NEW.phase_step, 'phase_steps', NEW.phase_steps,
    'attempts', NEW.attempts, 'error', NEW.error, 'renderer', NEW.renderer,
    'started_at', NEW.started_at, 'completed_at', NEW.completed_at, 'updated_at', NEW.updated_at,
    'width', NEW.width, 'height', NEW.height, 'frames', NEW.frames,
    'size_bytes', NEW.size_bytes, 'output_path', NEW.output_path)"""
_EPOCH = "((julianday('now') - 2440587.5) * 86400.0)"
_EVENT = "CASE NEW.status WHEN 'processing' THEN 'started' ELSE NEW.status END"

# Version 3: webhooks. A job may name a receiver and the events it wants; the triggers write
# each event into the outbox inside the very transaction that changes the job, so no committed
# change can miss its event and no event exists without its change. Progress events coalesce:
# one pending row per job, whose snapshot the next progress overwrites (latest wins).
WEBHOOKS = f"""
ALTER TABLE jobs ADD COLUMN webhook_url TEXT;
ALTER TABLE jobs ADD COLUMN webhook_events TEXT;
CREATE TABLE webhook_outbox (
    msg_id          TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL REFERENCES jobs (job_id),
    event           TEXT NOT NULL
                    CHECK (event IN ('started', 'progress', 'completed', 'failed', 'cancelled')),
    snapshot        TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error      TEXT,
    created         REAL NOT NULL,
    delivered_at    REAL
);
CREATE INDEX webhook_due ON webhook_outbox (status, next_attempt_at);
CREATE INDEX webhook_job ON webhook_outbox (job_id);
CREATE UNIQUE INDEX webhook_one_progress ON webhook_outbox (job_id)
    WHERE event = 'progress' AND status = 'pending';
CREATE TRIGGER webhook_on_status AFTER UPDATE OF status ON jobs
WHEN NEW.webhook_url IS NOT NULL AND NEW.status != OLD.status
    AND NEW.status IN ('processing', 'completed', 'failed', 'cancelled')
    AND EXISTS (SELECT 1 FROM json_each(NEW.webhook_events) WHERE value = {_EVENT})
BEGIN
    INSERT INTO webhook_outbox (msg_id, job_id, event, snapshot, created)
    VALUES ('msg_' || lower(hex(randomblob(16))), NEW.job_id, {_EVENT}, {_SNAPSHOT}, {_EPOCH});
END;
CREATE TRIGGER webhook_on_progress AFTER UPDATE OF progress ON jobs
WHEN NEW.webhook_url IS NOT NULL AND NEW.status = 'processing' AND OLD.status = 'processing'
    AND NEW.progress != OLD.progress
    AND EXISTS (SELECT 1 FROM json_each(NEW.webhook_events) WHERE value = 'progress')
BEGIN
    INSERT INTO webhook_outbox (msg_id, job_id, event, snapshot, created)
    VALUES ('msg_' || lower(hex(randomblob(16))), NEW.job_id, 'progress', {_SNAPSHOT}, {_EPOCH})
    ON CONFLICT (job_id) WHERE event = 'progress' AND status = 'pending'
    DO UPDATE SET snapshot = excluded.snapshot;
END;
"""

MIGRATIONS: list[str] = [SCHEMA, PHASE_COLUMNS, WEBHOOKS]


def iso_utc(moment: datetime) -> str:
    """The one timestamp format of the database: ISO 8601 UTC, always with microseconds, so
    every value has the same width and text order is time order (cut-offs included)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def utcnow() -> str:
    return iso_utc(datetime.now(UTC))


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass
class Job:
    """One row of `jobs`."""

    job_id: str
    user_id: int
    source: str
    chat_id: int | None
    message_id: int | None
    progress_message_id: int | None
    language: str | None
    duration: int
    resolution: str
    motion_preset: str
    aspect: str
    strength: float
    seed: int
    steps: int
    fps: int
    status: str
    progress: float
    message: str
    error: str | None
    attempts: int
    renderer: str | None
    input_path: str | None
    output_path: str | None
    width: int | None
    height: int | None
    frames: int | None
    size_bytes: int | None
    render_seconds: float | None
    idempotency_key: str | None
    not_before: float
    created_at: str
    started_at: str | None
    completed_at: str | None
    updated_at: str
    archived: int
    phase: str = ""
    phase_step: int = 0
    phase_steps: int = 0
    interruptions: int = 0
    webhook_url: str | None = None
    webhook_events: str | None = None  # a JSON list of event names

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


_JOB_COLUMNS = tuple(f.name for f in fields(Job))


@dataclass(frozen=True)
class NewJob:
    """The values a client's request gives a new row; the store adds status and timestamps."""

    job_id: str
    user_id: int
    source: Literal["api", "telegram"]
    chat_id: int | None
    message_id: int | None
    language: str | None
    duration: int
    resolution: str
    motion_preset: str
    aspect: str
    strength: float
    seed: int
    steps: int
    fps: int
    input_path: str
    idempotency_key: str | None
    webhook_url: str | None = None
    webhook_events: str | None = None


@dataclass
class OutboxRow:
    """A webhook event due for delivery, with the job as it was when the event happened."""

    msg_id: str
    event: str
    url: str
    attempts: int
    created: float
    job: Job


@dataclass
class Delivery:
    job_id: str
    chat_id: int
    status: str
    attempts: int
    next_attempt_at: float
    file_id: str | None
    last_error: str | None
    created_at: str
    sent_at: str | None


async def _check_caps(
    db: aiosqlite.Connection, user_id: int, max_queued: int, max_active_per_user: int
) -> None:
    async with db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'") as cur:
        queued = int((await cur.fetchone() or (0,))[0])
    if queued >= max_queued:
        raise TooManyJobs(
            f"the queue is full ({queued} jobs waiting)", retry_after=30, details={"cap": "queue"}
        )
    async with db.execute(
        "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND status IN ('queued', 'processing')",
        (user_id,),
    ) as cur:
        active = int((await cur.fetchone() or (0,))[0])
    if active >= max_active_per_user:
        raise TooManyJobs(
            f"you already have {active} videos in progress (at most {max_active_per_user})",
            retry_after=30,
            details={"cap": "user"},
        )


class Store:
    """Async access to the database. Create with `await Store.open(path)`."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = sqlite3.Row
        store = cls(db)
        try:
            await store._setup()
        except BaseException:
            # aiosqlite's connection thread would keep the process alive after the error.
            await db.close()
            raise
        return store

    async def _setup(self) -> None:
        await self._db.execute("PRAGMA journal_mode = WAL")
        await self._db.execute("PRAGMA synchronous = NORMAL")
        await self._db.execute("PRAGMA foreign_keys = ON")
        # A second process (a test, an admin's sqlite3 shell) may hold the lock briefly.
        await self._db.execute("PRAGMA busy_timeout = 5000")
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(
                f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
            log.info("database migrated to version %d", number)

    async def close(self) -> None:
        await self._db.close()

    # -- plumbing ---------------------------------------------------------------------------

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        # busy_timeout makes SQLite itself wait out another process's lock.
        async with self._db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def _fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _transaction(self, statements: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run `statements` in one IMMEDIATE transaction under the write lock, committed on return.

        Anything that fails, the COMMIT included (a deferred constraint, a full disk), rolls
        back: the connection never stays inside a transaction that every later write would
        then join."""
        async with self._write:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                result = await statements(self._db)
                await self._db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (then ROLLBACK says so: nothing to undo).
                with contextlib.suppress(sqlite3.Error):
                    await self._db.execute("ROLLBACK")
                raise
            return result

    async def _update(self, sql: str, params: Iterable[Any]) -> int:
        """One guarded UPDATE in its own transaction; returns the number of rows changed."""

        async def statements(db: aiosqlite.Connection) -> int:
            cur = await db.execute(sql, tuple(params))
            return cur.rowcount

        return await self._transaction(statements)

    async def _transition(self, sql: str, params: Iterable[Any]) -> Job | None:
        """One guarded `UPDATE ... RETURNING *`: the changed row, or None when the guard held."""

        async def statements(db: aiosqlite.Connection) -> Job | None:
            async with db.execute(sql, tuple(params)) as cur:
                return self._job(await cur.fetchone())

        return await self._transaction(statements)

    @staticmethod
    def _job(row: sqlite3.Row | None) -> Job | None:
        return Job(**{name: row[name] for name in _JOB_COLUMNS}) if row is not None else None

    # -- jobs -------------------------------------------------------------------------------

    async def create_job(
        self, new: NewJob, *, max_queued: int, max_active_per_user: int
    ) -> tuple[Job, bool]:
        """Insert a queued job unless the caps forbid it.

        Returns (job, created). With an idempotency key already used by this user the existing
        job comes back with created=False, whatever its state, and no cap applies.
        """

        async def statements(db: aiosqlite.Connection) -> tuple[Job | None, bool]:
            if new.idempotency_key is not None:
                async with db.execute(
                    "SELECT * FROM jobs WHERE user_id = ? AND idempotency_key = ?",
                    (new.user_id, new.idempotency_key),
                ) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    return self._job(row), False
            await _check_caps(db, new.user_id, max_queued, max_active_per_user)
            now = utcnow()
            async with db.execute(
                "INSERT INTO jobs (job_id, user_id, source, chat_id, message_id, language,"
                " duration, resolution, motion_preset, aspect, strength, seed, steps, fps,"
                " input_path, idempotency_key, webhook_url, webhook_events, status, created_at,"
                " updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)"
                " RETURNING *",
                (*astuple(new), now, now),  # NewJob's fields in the order named above
            ) as cur:
                return self._job(await cur.fetchone()), True

        job, created = await self._transaction(statements)
        assert job is not None
        return job, created

    async def check_caps(self, user_id: int, *, max_queued: int, max_active_per_user: int) -> None:
        """The caps without a transaction: a cheap early refusal before a photo is decoded.

        `create_job` checks them again inside its transaction, which is what really holds.
        """
        await _check_caps(self._db, user_id, max_queued, max_active_per_user)

    async def get_job(self, job_id: str) -> Job | None:
        return self._job(await self._fetchone("SELECT * FROM jobs WHERE job_id = ?", (job_id,)))

    async def job_by_idempotency_key(self, user_id: int, key: str) -> Job | None:
        return self._job(
            await self._fetchone(
                "SELECT * FROM jobs WHERE user_id = ? AND idempotency_key = ?", (user_id, key)
            )
        )

    async def list_jobs(
        self,
        *,
        user_id: int | None = None,
        status: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Job]:
        rows = await self._fetchall(
            "SELECT * FROM jobs"
            " WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR status = ?2)"
            " ORDER BY rowid DESC LIMIT ?3 OFFSET ?4",
            (user_id, status, limit, offset),
        )
        return [job for row in rows if (job := self._job(row)) is not None]

    async def count_jobs(self, *, user_id: int | None = None, status: str | None = None) -> int:
        row = await self._fetchone(
            "SELECT COUNT(*) FROM jobs"
            " WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR status = ?2)",
            (user_id, status),
        )
        return int(row[0]) if row else 0

    async def counts_by_status(self) -> dict[str, int]:
        rows = await self._fetchall("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        counts: dict[str, int] = dict.fromkeys(JobStatus, 0)
        counts.update({str(r[0]): int(r[1]) for r in rows})
        return counts

    async def queue(self, now: float, *, also: str | None = None) -> tuple[list[Job], Job | None]:
        """The queued jobs in the order the dispatcher serves them, and the job `also` (queued
        or not) when asked for: one query.

        The rule (README, "Dispatch order"): jobs that can run now come first, round robin
        between users: a user's k-th waiting job is in round k, and within a round users take
        turns by the time of their turn (when a job of theirs last started, or, if later, when
        their oldest waiting job was made), so a user just served goes to the back. Jobs still
        waiting out a retry backoff follow, by the time they may run. Serving the first job
        leaves the rest in the same order, so positions count down one by one.
        """
        rows = await self._fetchall(
            "WITH turns AS ("
            "  SELECT user_id, MAX(COALESCE(MAX(started_at), ''),"
            "  MIN(CASE WHEN status = 'queued' THEN created_at END)) AS turn"
            "  FROM jobs WHERE user_id IN (SELECT user_id FROM jobs WHERE status = 'queued')"
            "  GROUP BY user_id),"
            " waiting AS ("
            "  SELECT q.*, (q.not_before > ?1) AS backoff,"
            "  CASE WHEN q.not_before > ?1 THEN q.not_before ELSE 0 END AS wait_until,"
            "  ROW_NUMBER() OVER (PARTITION BY q.user_id, q.not_before > ?1 ORDER BY q.rowid)"
            "  AS round, t.turn AS turn, q.rowid AS seq"
            "  FROM jobs q JOIN turns t ON t.user_id = q.user_id WHERE q.status = 'queued')"
            " SELECT * FROM waiting"
            " UNION ALL SELECT jobs.*, 0, 0, 0, '', 0 FROM jobs"
            " WHERE job_id = ?2 AND status != 'queued'"
            " ORDER BY backoff, wait_until, round, turn, seq",
            (now, also),
        )
        jobs = [job for row in rows if (job := self._job(row)) is not None]
        found = next((job for job in jobs if job.job_id == also), None) if also else None
        return [job for job in jobs if job.status == JobStatus.QUEUED], found

    async def next_job(self, now: float) -> tuple[Job | None, float | None]:
        """(the job to serve now, or None; when none can run yet, the earliest `not_before`)."""
        queue, _ = await self.queue(now)
        for job in queue:
            if job.not_before <= now:
                return job, None
        return None, min((job.not_before for job in queue), default=None)

    async def queued_ids(self) -> list[str]:
        """Queued jobs in the order they are served."""
        queue, _ = await self.queue(time.time())
        return [job.job_id for job in queue]

    async def queued_ahead(self, job_id: str) -> list[Job]:
        """The queued jobs served before `job_id`, in order (empty when it is not queued)."""
        queue, _ = await self.queue(time.time())
        ids = [job.job_id for job in queue]
        return queue[: ids.index(job_id)] if job_id in ids else []

    async def job_and_queue_ahead(self, job_id: str) -> tuple[Job | None, list[Job]]:
        """A job and, when it is queued, the queued jobs served before it: one query."""
        queue, found = await self.queue(time.time(), also=job_id)
        ids = [job.job_id for job in queue]
        if job_id in ids:
            return queue[ids.index(job_id)], queue[: ids.index(job_id)]
        return found, []

    async def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to start; None when the job is not queued."""
        ahead = await self.queued_ahead(job_id)
        job = await self.get_job(job_id)
        return len(ahead) + 1 if job is not None and job.status == JobStatus.QUEUED else None

    async def render_times(
        self, limit: int = 2000
    ) -> list[tuple[tuple[str, str, int, int], float]]:
        """The measured times of the latest completed renders, oldest first:
        ((renderer, resolution, frames, steps), seconds)."""
        rows = await self._fetchall(
            "SELECT renderer, resolution, frames, steps, render_seconds FROM ("
            " SELECT rowid AS seq, * FROM jobs WHERE status = 'completed'"
            " AND render_seconds IS NOT NULL AND renderer IS NOT NULL AND frames IS NOT NULL"
            " ORDER BY rowid DESC LIMIT ?) ORDER BY seq",
            (limit,),
        )
        return [((str(r[0]), str(r[1]), int(r[2]), int(r[3])), float(r[4])) for r in rows]

    async def start_job(self, job_id: str, renderer: str) -> Job | None:
        """queued -> processing. None when the job is no longer queued (e.g. cancelled)."""
        now = utcnow()
        return await self._transition(
            "UPDATE jobs SET status = 'processing', started_at = ?, updated_at = ?, renderer = ?,"
            " progress = 0, message = 'starting', phase = 'starting', phase_step = 0,"
            " phase_steps = 0, error = NULL"
            " WHERE job_id = ? AND status = 'queued' RETURNING *",
            (now, now, renderer, job_id),
        )

    async def set_progress(self, job_id: str, progress: Progress) -> None:
        await self._update(
            "UPDATE jobs SET progress = ?, message = ?, phase = ?, phase_step = ?,"
            " phase_steps = ?, updated_at = ? WHERE job_id = ? AND status = 'processing'",
            (
                round(progress.percent, 1),
                progress.message,
                progress.phase,
                progress.step,
                progress.steps,
                utcnow(),
                job_id,
            ),
        )

    async def complete_job(
        self,
        job_id: str,
        *,
        output_path: str,
        width: int,
        height: int,
        frames: int,
        size_bytes: int,
        render_seconds: float,
    ) -> Job | None:
        """processing -> completed, and the Telegram delivery queued in the same transaction."""
        now = utcnow()

        async def statements(db: aiosqlite.Connection) -> Job | None:
            async with db.execute(
                "UPDATE jobs SET status = 'completed', progress = 100, message = 'done',"
                " output_path = ?, width = ?, height = ?, frames = ?, size_bytes = ?,"
                " render_seconds = ?, completed_at = ?, updated_at = ?, error = NULL"
                " WHERE job_id = ? AND status = 'processing' RETURNING *",
                (output_path, width, height, frames, size_bytes, render_seconds, now, now, job_id),
            ) as cur:
                job = self._job(await cur.fetchone())
            if job is not None and job.source == "telegram" and job.chat_id is not None:
                await db.execute(
                    "INSERT OR IGNORE INTO deliveries (job_id, chat_id, created_at)"
                    " VALUES (?, ?, ?)",
                    (job_id, job.chat_id, now),
                )
            return job

        return await self._transaction(statements)

    async def fail_job(self, job_id: str, error: str) -> Job | None:
        """processing|queued -> failed."""
        now = utcnow()
        return await self._transition(
            "UPDATE jobs SET status = 'failed', error = ?, message = 'failed',"
            " completed_at = ?, updated_at = ?"
            " WHERE job_id = ? AND status IN ('queued', 'processing') RETURNING *",
            (error, now, now, job_id),
        )

    async def cancel_job(self, job_id: str, *, running: bool) -> Job | None:
        """queued -> cancelled (running=False), or processing -> cancelled once the render stopped."""
        now = utcnow()
        return await self._transition(
            "UPDATE jobs SET status = 'cancelled', message = 'cancelled',"
            " completed_at = ?, updated_at = ? WHERE job_id = ? AND status = ? RETURNING *",
            (now, now, job_id, "processing" if running else "queued"),
        )

    async def requeue_job(
        self, job_id: str, *, count_attempt: bool, not_before: float = 0.0, error: str | None = None
    ) -> Job | None:
        """processing -> queued: a retry after an error, a stop, or recovery after a crash."""
        return await self._transition(
            "UPDATE jobs SET status = 'queued', progress = 0, message = ?, error = ?,"
            " attempts = attempts + ?, not_before = ?, started_at = NULL, updated_at = ?"
            " WHERE job_id = ? AND status = 'processing' RETURNING *",
            (
                "waiting to retry" if error else "queued",
                error,
                1 if count_attempt else 0,
                not_before,
                utcnow(),
                job_id,
            ),
        )

    async def recover(self, max_retries: int) -> tuple[int, list[Job]]:
        """At start: a job left `processing` by a dead process counts a failed attempt. It goes
        back to the queue, or, past `max_retries` attempts, ends failed (a photo that kills the
        process must not loop forever). Returns (jobs requeued, jobs failed)."""

        async def statements(db: aiosqlite.Connection) -> tuple[int, list[Job]]:
            now = utcnow()
            async with db.execute(
                "UPDATE jobs SET status = 'failed', message = 'failed', completed_at = ?1,"
                " updated_at = ?1, attempts = attempts + 1, interruptions = interruptions + 1,"
                " error = 'the service stopped while rendering this video '"
                " || (interruptions + 1) || ' times'"
                " WHERE status = 'processing' AND attempts >= ?2 RETURNING *",
                (now, max_retries),
            ) as cur:
                failed = [job for row in await cur.fetchall() if (job := self._job(row))]
            cur2 = await db.execute(
                "UPDATE jobs SET status = 'queued', progress = 0, message = 'queued after restart',"
                " phase = '', phase_step = 0, phase_steps = 0, attempts = attempts + 1,"
                " interruptions = interruptions + 1, started_at = NULL, updated_at = ?"
                " WHERE status = 'processing'",
                (now,),
            )
            return cur2.rowcount, failed

        requeued, failed = await self._transaction(statements)
        if requeued:
            log.info("recovered %d interrupted job(s)", requeued)
        return requeued, failed

    async def set_progress_message(self, job_id: str, message_id: int) -> None:
        await self._update(
            "UPDATE jobs SET progress_message_id = ? WHERE job_id = ?", (message_id, job_id)
        )

    async def set_paths(
        self, job_id: str, *, input_path: str | None, output_path: str | None, archived: bool
    ) -> None:
        """Storage housekeeping moved or removed files of a finished job."""
        await self._update(
            "UPDATE jobs SET input_path = ?, output_path = ?, archived = ? WHERE job_id = ?",
            (input_path, output_path, int(archived), job_id),
        )

    async def finished_before(self, cutoff: str) -> list[Job]:
        rows = await self._fetchall(
            "SELECT * FROM jobs WHERE status IN ('completed', 'failed', 'cancelled')"
            " AND completed_at < ? ORDER BY rowid",
            (cutoff,),
        )
        return [job for row in rows if (job := self._job(row)) is not None]

    async def integrity_check(self) -> str:
        row = await self._fetchone("PRAGMA integrity_check")
        return str(row[0]) if row else "no answer"

    # -- deliveries (Telegram outbox) ---------------------------------------------------------

    async def due_deliveries(self, now: float | None = None, limit: int = 20) -> list[Delivery]:
        rows = await self._fetchall(
            "SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY created_at LIMIT ?",
            (time.time() if now is None else now, limit),
        )
        return [Delivery(**dict(row)) for row in rows]

    async def get_delivery(self, job_id: str) -> Delivery | None:
        row = await self._fetchone("SELECT * FROM deliveries WHERE job_id = ?", (job_id,))
        return Delivery(**dict(row)) if row is not None else None

    async def delivery_claim(self, job_id: str) -> bool:
        """pending -> sending, committed before the upload starts (see the deliveries table)."""
        return bool(
            await self._update(
                "UPDATE deliveries SET status = 'sending', attempts = attempts + 1"
                " WHERE job_id = ? AND status = 'pending'",
                (job_id,),
            )
        )

    async def delivery_sent(self, job_id: str, file_id: str | None) -> bool:
        return bool(
            await self._update(
                "UPDATE deliveries SET status = 'sent', file_id = ?, sent_at = ?"
                " WHERE job_id = ? AND status = 'sending'",
                (file_id, utcnow(), job_id),
            )
        )

    async def interrupt_deliveries(self) -> list[Delivery]:
        """At start: uploads a dead process left `sending` become `interrupted`; returns them."""

        async def statements(db: aiosqlite.Connection) -> list[Delivery]:
            async with db.execute(
                "UPDATE deliveries SET status = 'interrupted' WHERE status = 'sending' RETURNING *"
            ) as cur:
                return [Delivery(**dict(row)) for row in await cur.fetchall()]

        return await self._transaction(statements)

    async def delivery_retry(self, job_id: str) -> bool:
        """interrupted -> pending: the user asked for the video after an interrupted upload."""
        return bool(
            await self._update(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = 0"
                " WHERE job_id = ? AND status = 'interrupted'",
                (job_id,),
            )
        )

    async def delivery_failed(self, job_id: str, error: str, *, retry_at: float | None) -> None:
        """A failed send: retried at `retry_at`, or undeliverable when it is None."""
        await self._update(
            "UPDATE deliveries SET last_error = ?,"
            " status = CASE WHEN ? IS NULL THEN 'undeliverable' ELSE 'pending' END,"
            " next_attempt_at = COALESCE(?, next_attempt_at)"
            " WHERE job_id = ? AND status IN ('pending', 'sending')",
            (error, retry_at, retry_at, job_id),
        )

    async def sent_videos(self, user_id: int, limit: int = 10) -> list[tuple[Job, Delivery]]:
        rows = await self._fetchall(
            "SELECT j.*, d.status AS d_status, d.attempts AS d_attempts,"
            " d.next_attempt_at AS d_next, d.file_id AS d_file_id, d.last_error AS d_error,"
            " d.created_at AS d_created, d.sent_at AS d_sent, d.chat_id AS d_chat"
            " FROM jobs j JOIN deliveries d USING (job_id)"
            " WHERE j.user_id = ? AND d.status = 'sent' ORDER BY d.sent_at DESC LIMIT ?",
            (user_id, limit),
        )
        result = []
        for row in rows:
            job = self._job(row)
            assert job is not None
            delivery = Delivery(
                job.job_id,
                row["d_chat"],
                row["d_status"],
                row["d_attempts"],
                row["d_next"],
                row["d_file_id"],
                row["d_error"],
                row["d_created"],
                row["d_sent"],
            )
            result.append((job, delivery))
        return result

    # -- bot state ----------------------------------------------------------------------------

    async def fsm_get(self, key: str) -> tuple[str | None, dict[str, Any]]:
        row = await self._fetchone("SELECT state, data FROM fsm WHERE key = ?", (key,))
        if row is None:
            return None, {}
        return row["state"], json.loads(row["data"])

    async def fsm_set_state(self, key: str, state: str | None) -> None:
        await self._update(
            "INSERT INTO fsm (key, state) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET state = excluded.state",
            (key, state),
        )

    async def fsm_set_data(self, key: str, data: dict[str, Any]) -> None:
        await self._update(
            "INSERT INTO fsm (key, data) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET data = excluded.data",
            (key, json.dumps(data)),
        )

    async def get_language(self, user_id: int) -> str | None:
        row = await self._fetchone("SELECT language FROM users WHERE user_id = ?", (user_id,))
        return str(row[0]) if row and row[0] else None

    async def set_language(self, user_id: int, language: str) -> None:
        await self._update(
            "INSERT INTO users (user_id, language) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET language = excluded.language",
            (user_id, language),
        )

    async def set_blocked(self, user_id: int, blocked: bool) -> None:
        await self._update(
            "INSERT INTO users (user_id, blocked) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET blocked = excluded.blocked",
            (user_id, int(blocked)),
        )

    async def get_flag(self, name: str) -> str | None:
        row = await self._fetchone("SELECT value FROM flags WHERE name = ?", (name,))
        return str(row[0]) if row else None

    async def set_flag(self, name: str, value: str) -> None:
        await self._update(
            "INSERT INTO flags (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # -- webhooks (outbox) --------------------------------------------------------------------

    async def webhooks_interrupted(self) -> int:
        """At start: deliveries the last process left in flight are due again (same id)."""
        return await self._update(
            "UPDATE webhook_outbox SET status = 'pending' WHERE status = 'sending'", ()
        )

    async def webhooks_due(self, now: float, limit: int) -> list[OutboxRow]:
        """Pending events whose time has come, oldest first; a job's progress event waits while
        another progress event of that job is in flight."""
        rows = await self._fetchall(
            "SELECT o.msg_id AS o_msg_id, o.event AS o_event, o.attempts AS o_attempts,"
            " o.created AS o_created, o.snapshot AS o_snapshot, j.* FROM webhook_outbox o"
            " JOIN jobs j ON j.job_id = o.job_id"
            " WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
            " AND NOT (o.event = 'progress' AND EXISTS (SELECT 1 FROM webhook_outbox s"
            "  WHERE s.job_id = o.job_id AND s.event = 'progress' AND s.status = 'sending'))"
            " ORDER BY o.created LIMIT ?",
            (now, limit),
        )
        due = []
        for row in rows:
            job = self._job(row)
            assert job is not None and job.webhook_url is not None
            job = replace(job, **json.loads(row["o_snapshot"]))
            due.append(
                OutboxRow(
                    row["o_msg_id"],
                    row["o_event"],
                    job.webhook_url or "",
                    int(row["o_attempts"]),
                    float(row["o_created"]),
                    job,
                )
            )
        return due

    async def webhook_claim(self, msg_id: str) -> bool:
        """pending -> sending, committed before the request goes out."""
        return bool(
            await self._update(
                "UPDATE webhook_outbox SET status = 'sending' WHERE msg_id = ? AND status = 'pending'",
                (msg_id,),
            )
        )

    async def webhook_delivered(self, msg_id: str) -> None:
        await self._update(
            "UPDATE webhook_outbox SET status = 'delivered', attempts = attempts + 1,"
            " last_error = NULL, delivered_at = ? WHERE msg_id = ?",
            (time.time(), msg_id),
        )

    async def webhook_failed(self, msg_id: str, error: str, *, retry_at: float | None) -> None:
        """One more failed attempt: due again at `retry_at`, or given up (None)."""
        await self._update(
            "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = ?,"
            " status = CASE WHEN ? IS NULL THEN 'failed' ELSE 'pending' END,"
            " next_attempt_at = COALESCE(?, next_attempt_at) WHERE msg_id = ?",
            (error, retry_at, retry_at, msg_id),
        )

    async def webhooks_pending(self) -> int:
        row = await self._fetchone(
            "SELECT COUNT(*) FROM webhook_outbox WHERE status IN ('pending', 'sending')"
        )
        return int(row[0]) if row else 0

    async def webhook_summary(self, job_id: str) -> dict[str, Any] | None:
        """{delivered, pending, failed, attempts, last_error} of a job's events; None without any."""
        row = await self._fetchone(
            "SELECT COUNT(*) AS events, COALESCE(SUM(status = 'delivered'), 0) AS delivered,"
            " COALESCE(SUM(status IN ('pending', 'sending')), 0) AS pending,"
            " COALESCE(SUM(status = 'failed'), 0) AS failed,"
            " COALESCE(SUM(attempts), 0) AS attempts,"
            " (SELECT last_error FROM webhook_outbox WHERE job_id = ?1 AND last_error IS NOT NULL"
            "  ORDER BY created DESC LIMIT 1) AS last_error"
            " FROM webhook_outbox WHERE job_id = ?1",
            (job_id,),
        )
        if row is None or not row["events"]:
            return None
        return {
            "delivered": int(row["delivered"]),
            "pending": int(row["pending"]),
            "failed": int(row["failed"]),
            "attempts": int(row["attempts"]),
            "last_error": row["last_error"],
        }
