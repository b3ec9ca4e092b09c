"""The cluster's store of record: `store.port.BotStore` on PostgreSQL, the jobs (`fm_jobs`) and
the bot's tables beside them (`fm_deliveries`, written by the trigger of the transaction that
completes a Telegram job; `fm_fsm`, `fm_users`, `fm_flags`).

The front's job service reads and writes the shared rows themselves; there is no second copy.
A new job's row and its procrastinate job commit in one transaction, so a job is queued for the
workers exactly when it exists. Transitions are guarded `UPDATE ... RETURNING *` as in SQLite,
and every one keeps procrastinate in step (a requeue defers a new procrastinate job, a cancel
cancels it). The fair order is `fair_order`'s text, the same as the single box's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import astuple
from typing import Any

import psycopg

from ..errors import TooManyJobs, Unavailable
from ..fair_order import fair_ctes
from ..store import job_texts
from ..store import texts as sql
from ..store.outbox import webhook_summary
from ..store.rows import Delivery, Job, NewJob, UserName, check_same_request, job_from, utcnow
from ..store.telegram import sent_delivery
from ..vocabulary import JobStatus, Progress
from .db import ClusterDB, Connection, Row, defer_in, forget_worker_in, rerank_in
from .outbox import pg

log = logging.getLogger(__name__)

_CREATE_LOCK = 7_351_004  # submits take turns: the caps' check and the insert are one step

_FAIR = "WITH" + fair_ctes("postgres")

_INSERT = (
    "INSERT INTO fm_jobs (job_id, user_id, source, chat_id, message_id, language,"
    " duration, resolution, motion_preset, aspect, strength, seed, steps, fps,"
    " input_path, idempotency_key, request_digest, webhook_url, webhook_events,"
    " shot, story, photo_pixels, status, message, created_at, updated_at) VALUES"
    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
    " 'queued', 'queued', %s, %s) RETURNING *"
)


async def _check_caps(
    conn: Connection, source: str, user_id: int, max_queued: int, max_active_per_user: int
) -> None:
    cur = await conn.execute(
        "SELECT COUNT(*) FILTER (WHERE status = 'queued') AS queued,"
        " COUNT(*) FILTER (WHERE source = %s AND user_id = %s) AS active"
        " FROM fm_jobs WHERE status IN ('queued', 'processing')",
        (source, user_id),
    )
    row = await cur.fetchone()
    queued, active = (int(row["queued"]), int(row["active"])) if row else (0, 0)
    if queued >= max_queued:
        raise TooManyJobs(
            f"the queue is full ({queued} jobs waiting)", retry_after=30, details={"cap": "queue"}
        )
    if active >= max_active_per_user:
        raise TooManyJobs(
            f"you already have {active} videos in progress (at most {max_active_per_user})",
            retry_after=30,
            details={"cap": "user"},
        )


@contextlib.asynccontextmanager
async def _reachable(db: ClusterDB) -> AsyncIterator[None]:
    """PostgreSQL's failures as the 503 the API and the bot answer while it is away; at once
    while it is away (a direct look while the listener reconnects: the server may be back)."""
    if not await db.reachable():
        raise Unavailable("the job database is not reachable, try again", retry_after=5)
    try:
        yield
    except (psycopg.Error, OSError) as exc:
        raise Unavailable("the job database is not reachable, try again", retry_after=5) from exc


async def _back_to_queue(conn: Connection, row: Row | None, not_before: float) -> Job | None:
    """A row a shared text sent back to the queue: without its worker, under a new
    procrastinate job, and the waiting jobs ranked again."""
    if row is None:
        return None
    await forget_worker_in(conn, row)
    row["pq_id"] = await defer_in(conn, row["job_id"], not_before)
    await rerank_in(conn, None)
    return job_from(row)


def _jobs(rows: list[Row]) -> list[Job]:
    return [job_from(row) for row in rows]


class PgStore:
    """The jobs of a cluster and the bot's tables beside them, in its PostgreSQL (`db` is the
    pool the front shares): `store.port.BotStore`, as the single box's `store.Store`."""

    def __init__(self, db: ClusterDB) -> None:
        self.db = db

    # The database's answers; while it is away, 503 with Retry-After (never a 500).

    async def _one(self, sql: str, params: Any = None) -> Row | None:
        async with _reachable(self.db):
            return await self.db.one(sql, params)

    async def _rows(self, sql: str, params: Any = None) -> list[Row]:
        async with _reachable(self.db):
            return await self.db.rows(sql, params)

    async def _run(self, sql: str, params: Any = None) -> int:
        async with _reachable(self.db):
            return await self.db.run(sql, params)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with _reachable(self.db), self.db.transaction() as conn:
            yield conn

    async def _job(self, sql: str, params: Any = None) -> Job | None:
        row = await self._one(sql, params)
        return job_from(row) if row is not None else None

    # -- submit -----------------------------------------------------------------------------

    async def create_job(
        self, new: NewJob, *, max_queued: int, max_active_per_user: int
    ) -> tuple[Job, bool]:
        """The row and its procrastinate job in one transaction, unless the caps forbid it.
        With an idempotency key this user used already, that job comes back (created=False)."""
        async with self._transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
            if new.idempotency_key is not None:
                cur = await conn.execute(
                    "SELECT * FROM fm_jobs WHERE source = %s AND user_id = %s"
                    " AND idempotency_key = %s",
                    (new.source, new.user_id, new.idempotency_key),
                )
                found = await cur.fetchone()
                if found is not None:
                    existing = job_from(found)
                    check_same_request(existing, new.request_digest)
                    return existing, False
            await _check_caps(conn, new.source, new.user_id, max_queued, max_active_per_user)
            now = utcnow()
            cur = await conn.execute(_INSERT, (*astuple(new), now, now))
            row = await cur.fetchone()
            assert row is not None
            row["pq_id"] = await defer_in(conn, new.job_id, 0.0)
            await rerank_in(conn, None)
        return job_from(row), True

    async def check_caps(
        self, source: str, user_id: int, *, max_queued: int, max_active_per_user: int
    ) -> None:
        async with _reachable(self.db), self.db.pool.connection() as conn:
            await _check_caps(conn, source, user_id, max_queued, max_active_per_user)

    # -- reads ------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        return await self._job("SELECT * FROM fm_jobs WHERE job_id = %s", (job_id,))

    async def job_by_idempotency_key(self, source: str, user_id: int, key: str) -> Job | None:
        return await self._job(
            "SELECT * FROM fm_jobs WHERE source = %s AND user_id = %s AND idempotency_key = %s",
            (source, user_id, key),
        )

    async def list_jobs(
        self,
        *,
        user_id: int | None = None,
        status: str | None = None,
        limit: int = 20,
        offset: int = 0,
        source: str | None = None,
    ) -> list[Job]:
        return _jobs(
            await self._rows(
                "SELECT * FROM fm_jobs WHERE (%(user)s::bigint IS NULL OR user_id = %(user)s)"
                " AND (%(status)s::text IS NULL OR status = %(status)s)"
                " AND (%(source)s::text IS NULL OR source = %(source)s)"
                " ORDER BY seq DESC LIMIT %(limit)s OFFSET %(offset)s",
                {
                    "user": user_id,
                    "status": status,
                    "limit": limit,
                    "offset": offset,
                    "source": source,
                },
            )
        )

    async def count_jobs(self, *, user_id: int | None = None, status: str | None = None) -> int:
        row = await self._one(
            "SELECT COUNT(*) AS n FROM fm_jobs WHERE (%(user)s::bigint IS NULL"
            " OR user_id = %(user)s) AND (%(status)s::text IS NULL OR status = %(status)s)",
            {"user": user_id, "status": status},
        )
        return int(row["n"]) if row else 0

    async def counts_by_status(self) -> dict[str, int]:
        rows = await self._rows("SELECT status, COUNT(*) AS n FROM fm_jobs GROUP BY status")
        counts: dict[str, int] = dict.fromkeys(JobStatus, 0)
        counts.update({str(r["status"]): int(r["n"]) for r in rows})
        return counts

    async def _queue(self, now: float, also: str | None) -> tuple[list[Job], Job | None]:
        """The queued jobs in the fair order, and the job `also` whatever its state: one query."""
        rows = await self._rows(
            _FAIR + "SELECT f.*, fair.rank AS rank FROM fair JOIN fm_jobs f"
            " ON f.job_id = fair.job_id UNION ALL SELECT f.*, 0 FROM fm_jobs f"
            " WHERE f.job_id = %(also)s AND f.status <> 'queued' ORDER BY rank",
            {"now": now, "also": also},
        )
        jobs = _jobs(rows)
        found = next((job for job in jobs if job.job_id == also), None) if also else None
        return [job for job in jobs if job.status == JobStatus.QUEUED], found

    async def queue(self, now: float) -> tuple[list[Job], None]:
        """The queued jobs in the fair order (the admin's queue view)."""
        queue, _ = await self._queue(now, None)
        return queue, None

    async def retry_failed(self, job_id: str) -> Job | None:
        """failed -> queued: an operator's retry, a new attempt under a new procrastinate job
        (same seed and photo). None when the job is not failed."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(pg(job_texts.RETRY), (job_id,))
            return await _back_to_queue(conn, await cur.fetchone(), 0.0)

    async def queued_ahead(self, job_id: str) -> list[Job]:
        queue, _ = await self._queue(time.time(), None)
        ids = [job.job_id for job in queue]
        return queue[: ids.index(job_id)] if job_id in ids else []

    async def job_and_queue_ahead(self, job_id: str) -> tuple[Job | None, list[Job]]:
        queue, found = await self._queue(time.time(), job_id)
        ids = [job.job_id for job in queue]
        if job_id in ids:
            return queue[ids.index(job_id)], queue[: ids.index(job_id)]
        return found, []

    async def queue_position(self, job_id: str) -> int | None:
        """1 for the next job to start; None when the job is not queued."""
        job, ahead = await self.job_and_queue_ahead(job_id)
        return len(ahead) + 1 if job is not None and job.status == JobStatus.QUEUED else None

    async def render_times(
        self, limit: int = 2000
    ) -> list[tuple[tuple[str, str, int, int], float]]:
        return [
            ((r, res, f, s), seconds) for (r, res, f, s, _), seconds in await self.render_work()
        ]

    async def render_work(
        self, limit: int = 2000
    ) -> list[tuple[tuple[str, str, int, int, int], float]]:
        rows = await self._rows(
            "SELECT renderer, resolution, frames, steps, COALESCE(photo_pixels, 0) AS photo_pixels,"
            " render_seconds FROM ("
            " SELECT * FROM fm_jobs WHERE status = 'completed' AND render_seconds IS NOT NULL"
            " AND renderer IS NOT NULL AND frames IS NOT NULL ORDER BY seq DESC LIMIT %s) r"
            " ORDER BY seq",
            (limit,),
        )
        return [
            (
                (
                    str(r["renderer"]),
                    str(r["resolution"]),
                    int(r["frames"]),
                    int(r["steps"]),
                    int(r["photo_pixels"]),
                ),
                float(r["render_seconds"]),
            )
            for r in rows
        ]

    # -- transitions ------------------------------------------------------------------------

    async def start_job(self, job_id: str, renderer: str) -> Job | None:
        """queued -> processing (a worker starts through `ClusterDB.start`, fenced)."""
        return await self._job(pg(job_texts.START), (renderer, job_id))

    async def set_progress(self, job_id: str, progress: Progress) -> None:
        await self._run(
            pg(job_texts.PROGRESS),
            (
                round(progress.percent, 1),
                progress.message,
                progress.phase,
                progress.step,
                progress.steps,
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
        """processing -> completed; a Telegram job's delivery is queued by the trigger."""
        return await self._job(
            pg(job_texts.COMPLETE),
            (output_path, width, height, frames, size_bytes, render_seconds, job_id),
        )

    async def _end(self, conn: Connection, row: Row | None, *, abort: bool) -> Job | None:
        """A job row that ended: its procrastinate job is cancelled (a running one aborted)."""
        if row is None:
            return None
        if row["pq_id"] is not None:
            await conn.execute(
                "SELECT procrastinate_cancel_job_v1(%s, %s, false)", (row["pq_id"], abort)
            )
        return job_from(row)

    async def fail_job(self, job_id: str, error: str) -> Job | None:
        async with self._transaction() as conn:
            cur = await conn.execute(pg(job_texts.FAIL), (error, job_id))
            return await self._end(conn, await cur.fetchone(), abort=True)

    async def cancel_job(self, job_id: str, *, running: bool) -> Job | None:
        async with self._transaction() as conn:
            cur = await conn.execute(
                pg(job_texts.CANCEL), (job_id, "processing" if running else "queued")
            )
            return await self._end(conn, await cur.fetchone(), abort=running)

    async def requeue_job(
        self, job_id: str, *, count_attempt: bool, not_before: float = 0.0, error: str | None = None
    ) -> Job | None:
        """processing -> queued under a new procrastinate job, without the ended phase."""
        message = "waiting to retry" if error else "queued"
        async with self._transaction() as conn:
            cur = await conn.execute(
                pg(job_texts.REQUEUE),
                (message, error, 1 if count_attempt else 0, not_before, job_id),
            )
            return await _back_to_queue(conn, await cur.fetchone(), not_before)

    async def finished_before(self, cutoff: str) -> list[Job]:
        return _jobs(
            await self._rows(
                "SELECT * FROM fm_jobs WHERE status IN ('completed', 'failed', 'cancelled')"
                " AND completed_at < %s ORDER BY seq",
                (cutoff,),
            )
        )

    async def set_progress_message(self, job_id: str, message_id: int) -> None:
        await self._run(pg(job_texts.SET_PROGRESS_MESSAGE), (message_id, job_id))

    async def release_progress_message(self, chat_id: int, message_id: int) -> None:
        """The message is no longer a job's progress message (the user took it for a menu)."""
        await self._run(pg(job_texts.RELEASE_PROGRESS_MESSAGE), (chat_id, message_id))

    async def set_paths(
        self, job_id: str, *, input_path: str | None, output_path: str | None, archived: bool
    ) -> None:
        await self._run(pg(job_texts.SET_PATHS), (input_path, output_path, int(archived), job_id))

    async def webhook_summary(self, job_id: str) -> dict[str, Any] | None:
        return webhook_summary(await self._one(pg(sql.WEBHOOK_SUMMARY), (job_id, job_id)))

    # -- the bot's tables: the single box's texts (store.texts) ---------------------------------

    async def due_deliveries(self, now: float | None = None, limit: int = 20) -> list[Delivery]:
        rows = await self._rows(
            pg(sql.DELIVERIES_DUE), (time.time() if now is None else now, limit)
        )
        return [Delivery(**row) for row in rows]

    async def get_delivery(self, job_id: str) -> Delivery | None:
        row = await self._one(pg(sql.DELIVERY), (job_id,))
        return Delivery(**row) if row is not None else None

    async def delivery_claim(self, job_id: str) -> bool:
        return bool(await self._run(pg(sql.DELIVERY_CLAIM), (job_id,)))

    async def delivery_sent(self, job_id: str, file_id: str | None) -> bool:
        return bool(await self._run(pg(sql.DELIVERY_SENT), (file_id, utcnow(), job_id)))

    async def interrupt_deliveries(self) -> list[Delivery]:
        return [Delivery(**row) for row in await self._rows(pg(sql.DELIVERIES_INTERRUPT))]

    async def delivery_retry(self, job_id: str) -> bool:
        return bool(await self._run(pg(sql.DELIVERY_RETRY), (job_id,)))

    async def delivery_failed(self, job_id: str, error: str, *, retry_at: float | None) -> None:
        await self._run(pg(sql.DELIVERY_FAILED), (error, retry_at, retry_at, job_id))

    async def undelivered(self, user_id: int) -> list[Delivery]:
        return [Delivery(**row) for row in await self._rows(pg(sql.UNDELIVERED), (user_id,))]

    async def redeliver(self, job_id: str) -> bool:
        return bool(await self._run(pg(sql.REDELIVER), (job_id,)))

    async def sent_videos(self, user_id: int, limit: int = 10) -> list[tuple[Job, Delivery]]:
        rows = await self._rows(pg(sql.SENT_VIDEOS), (user_id, limit))
        return [(job_from(row), sent_delivery(row["job_id"], row)) for row in rows]

    async def fsm_get(self, key: str) -> tuple[str | None, dict[str, Any]]:
        row = await self._one(pg(sql.FSM_GET), (key,))
        if row is None:
            return None, {}
        return row["state"], json.loads(row["data"])

    async def fsm_set_state(self, key: str, state: str | None) -> None:
        await self._run(pg(sql.FSM_SET_STATE), (key, state))

    async def fsm_set_data(self, key: str, data: dict[str, Any]) -> None:
        await self._run(pg(sql.FSM_SET_DATA), (key, json.dumps(data)))

    async def get_language(self, user_id: int) -> str | None:
        row = await self._one(pg(sql.LANGUAGE), (user_id,))
        return str(row["language"]) if row and row["language"] else None

    async def set_language(self, user_id: int, language: str) -> None:
        await self._run(pg(sql.SET_LANGUAGE), (user_id, language))

    async def set_blocked(self, user_id: int, blocked: bool) -> None:
        await self._run(pg(sql.SET_BLOCKED), (user_id, int(blocked)))

    async def unblock(self, user_id: int) -> bool:
        return bool(await self._run(pg(sql.UNBLOCK), (user_id,)))

    async def set_name(self, user_id: int, name: UserName) -> None:
        await self._run(pg(sql.SET_NAME), (user_id, *name))

    async def get_name(self, user_id: int) -> UserName | None:
        row = await self._one(pg(sql.NAME), (user_id,))
        if row is None or row["first_name"] is None:
            return None
        return UserName(row["first_name"], row["last_name"], row["username"])

    async def get_flag(self, name: str) -> str | None:
        row = await self._one(pg(sql.FLAG), (name,))
        return str(row["value"]) if row else None

    async def set_flag(self, name: str, value: str) -> None:
        await self._run(pg(sql.SET_FLAG), (name, value))
