"""The jobs table: insert, reads, the dispatch order, transitions, progress, recovery."""

from __future__ import annotations

import logging
import time
from dataclasses import astuple, replace

import aiosqlite

from ..errors import TooManyJobs
from ..fair_order import fair_ctes
from ..retry import Interrupted, after_interruption
from ..vocabulary import JobStatus, Progress
from . import job_texts
from .base import Base
from .rows import Job, NewJob, check_same_request, utcnow

log = logging.getLogger(__name__)


async def _check_caps(
    db: aiosqlite.Connection, source: str, user_id: int, max_queued: int, max_active_per_user: int
) -> None:
    async with db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'") as cur:
        queued = int((await cur.fetchone() or (0,))[0])
    if queued >= max_queued:
        raise TooManyJobs(
            f"the queue is full ({queued} jobs waiting)", retry_after=30, details={"cap": "queue"}
        )
    async with db.execute(
        "SELECT COUNT(*) FROM jobs WHERE source = ? AND user_id = ?"
        " AND status IN ('queued', 'processing')",
        (source, user_id),
    ) as cur:
        active = int((await cur.fetchone() or (0,))[0])
    if active >= max_active_per_user:
        raise TooManyJobs(
            f"you already have {active} videos in progress (at most {max_active_per_user})",
            retry_after=30,
            details={"cap": "user"},
        )


class Jobs(Base):
    """Queries of the jobs table."""

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
                    "SELECT * FROM jobs WHERE source = ? AND user_id = ? AND idempotency_key = ?",
                    (new.source, new.user_id, new.idempotency_key),
                ) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    existing = self._job(row)
                    assert existing is not None
                    check_same_request(existing, new.request_digest)
                    return existing, False
            await _check_caps(db, new.source, new.user_id, max_queued, max_active_per_user)
            now = utcnow()
            async with db.execute(
                "INSERT INTO jobs (job_id, user_id, source, chat_id, message_id, language,"
                " duration, resolution, motion_preset, aspect, strength, seed, steps, fps,"
                " input_path, idempotency_key, request_digest, webhook_url, webhook_events,"
                " shot, story, photo_pixels, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " 'queued', ?, ?)"
                " RETURNING *",
                (*astuple(new), now, now),  # NewJob's fields in the order named above
            ) as cur:
                return self._job(await cur.fetchone()), True

        job, created = await self._transaction(statements)
        assert job is not None
        self._remember(job)
        return job, created

    async def check_caps(
        self, source: str, user_id: int, *, max_queued: int, max_active_per_user: int
    ) -> None:
        """The caps without a transaction: a cheap early refusal before a photo is decoded.

        `create_job` checks them again inside its transaction, which is what really holds.
        """
        await _check_caps(self._db, source, user_id, max_queued, max_active_per_user)

    async def get_job(self, job_id: str) -> Job | None:
        cached = self._rows.get(job_id)
        if cached is not None:
            self._rows.move_to_end(job_id)
            return cached
        writes = self._writes
        job = self._job(await self._fetchone("SELECT * FROM jobs WHERE job_id = ?", (job_id,)))
        if writes == self._writes and job_id not in self._rows:  # no write in between
            self._remember(job)
        return job

    async def job_by_idempotency_key(self, source: str, user_id: int, key: str) -> Job | None:
        return self._job(
            await self._fetchone(
                "SELECT * FROM jobs WHERE source = ? AND user_id = ? AND idempotency_key = ?",
                (source, user_id, key),
            )
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
        rows = await self._fetchall(
            "SELECT * FROM jobs"
            " WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR status = ?2)"
            " AND (?5 IS NULL OR source = ?5)"
            " ORDER BY rowid DESC LIMIT ?3 OFFSET ?4",
            (user_id, status, limit, offset, source),
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
        if also is None:
            return await self._queue_now(now), None
        queue = await self._queue_now(now)
        found = next((job for job in queue if job.job_id == also), None)
        return queue, found or await self.get_job(also)

    async def _queue_now(self, now: float) -> list[Job]:
        """The queue in dispatch order, from the copy while no write and no end of a retry
        backoff can have changed it."""
        memo = self._queue
        if memo is not None and memo[0] == self._version and now < memo[1]:
            return memo[2]
        version = self._version
        queue, _ = await self._queue_query(now, None)
        if version == self._version:
            ends = [job.not_before for job in queue if job.not_before > now]
            self._queue = (version, min(ends, default=float("inf")), queue)
        return queue

    async def _queue_query(self, now: float, also: str | None) -> tuple[list[Job], Job | None]:
        rows = await self._fetchall(
            "WITH"
            + fair_ctes("sqlite")
            + "SELECT jobs.*, fair.rank AS rank FROM fair JOIN jobs ON jobs.job_id = fair.job_id"
            " UNION ALL SELECT jobs.*, 0 FROM jobs WHERE job_id = ?2 AND status != 'queued'"
            " ORDER BY rank",
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
        return [
            ((r, res, f, s), seconds) for (r, res, f, s, _), seconds in await self.render_work()
        ]

    async def render_work(
        self, limit: int = 2000
    ) -> list[tuple[tuple[str, str, int, int, int], float]]:
        """`render_times` with the photo's pixels (0 where unknown) after the steps."""
        rows = await self._fetchall(
            "SELECT renderer, resolution, frames, steps, COALESCE(photo_pixels, 0),"
            " render_seconds FROM ("
            " SELECT rowid AS seq, * FROM jobs WHERE status = 'completed'"
            " AND render_seconds IS NOT NULL AND renderer IS NOT NULL AND frames IS NOT NULL"
            " ORDER BY rowid DESC LIMIT ?) ORDER BY seq",
            (limit,),
        )
        return [
            ((str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4])), float(r[5])) for r in rows
        ]

    async def start_job(self, job_id: str, renderer: str) -> Job | None:
        """queued -> processing. None when the job is no longer queued (e.g. cancelled)."""
        return await self._transition(job_texts.START, (renderer, job_id))

    async def set_progress(self, job_id: str, progress: Progress) -> None:
        percent = round(progress.percent, 1)
        params = (percent, progress.message, progress.phase, progress.step, progress.steps, job_id)

        async def statements(db: aiosqlite.Connection) -> str | None:
            async with db.execute(job_texts.PROGRESS, params) as cur:
                row = await cur.fetchone()
            return str(row[0]) if row is not None else None

        # Progress never reorders the queue: the queue's copy stays; the row's is patched.
        now = await self._transaction(statements, reorders=False)
        if now is not None:
            cached = self._rows.get(job_id)
            if cached is not None:
                self._rows[job_id] = replace(
                    cached,
                    progress=percent,
                    message=progress.message,
                    phase=progress.phase,
                    phase_step=progress.step,
                    phase_steps=progress.steps,
                    updated_at=now,
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
                job_texts.COMPLETE,
                (output_path, width, height, frames, size_bytes, render_seconds, job_id),
            ) as cur:
                job = self._job(await cur.fetchone())
            if job is not None and job.source == "telegram" and job.chat_id is not None:
                await db.execute(
                    "INSERT OR IGNORE INTO deliveries (job_id, chat_id, created_at)"
                    " VALUES (?, ?, ?)",
                    (job_id, job.chat_id, now),
                )
            return job

        return self._remember(await self._transaction(statements))

    async def fail_job(self, job_id: str, error: str) -> Job | None:
        """processing|queued -> failed."""
        return await self._transition(job_texts.FAIL, (error, job_id))

    async def cancel_job(self, job_id: str, *, running: bool) -> Job | None:
        """queued -> cancelled (running=False), or processing -> cancelled once the render stopped."""
        return await self._transition(
            job_texts.CANCEL, (job_id, "processing" if running else "queued")
        )

    async def requeue_job(
        self, job_id: str, *, count_attempt: bool, not_before: float = 0.0, error: str | None = None
    ) -> Job | None:
        """processing -> queued: a retry after an error, a stop, or recovery after a crash."""
        message = "waiting to retry" if error else "queued"
        return await self._transition(
            job_texts.REQUEUE, (message, error, 1 if count_attempt else 0, not_before, job_id)
        )

    async def recover(self, max_retries: int) -> tuple[int, list[Job]]:
        """At start: a job left `processing` by a dead process counts a failed attempt. It goes
        back to the queue, or, past `max_retries` attempts, ends failed (the retry policy's
        crash-loop guard). Returns (jobs requeued, jobs failed)."""
        crash = Interrupted("the service stopped")

        async def statements(db: aiosqlite.Connection) -> tuple[int, list[Job]]:
            async with db.execute("SELECT * FROM jobs WHERE status = 'processing'") as cur:
                left = [job for row in await cur.fetchall() if (job := self._job(row))]
            failed: list[Job] = []
            for job in left:
                after = after_interruption(max_retries, crash, job.attempts, job.interruptions)
                if after.status == "failed":
                    async with db.execute(
                        job_texts.INTERRUPTED_FAILED, (after.error, job.job_id)
                    ) as cur:
                        failed += [job for row in await cur.fetchall() if (job := self._job(row))]
                    continue
                async with db.execute(
                    job_texts.INTERRUPTED_REQUEUE, ("queued after restart", job.job_id)
                ) as cur:
                    await cur.fetchall()
            return len(left) - len(failed), failed

        requeued, failed = await self._transaction(statements)
        self._rows.clear()  # recovery rewrote rows without returning them all
        if requeued:
            log.info("recovered %d interrupted job(s)", requeued)
        return requeued, failed

    async def set_progress_message(self, job_id: str, message_id: int) -> None:
        await self._transition(job_texts.SET_PROGRESS_MESSAGE, (message_id, job_id))

    async def release_progress_message(self, chat_id: int, message_id: int) -> None:
        """The message is no longer a job's progress message (the user took it for a menu)."""
        await self._update(job_texts.RELEASE_PROGRESS_MESSAGE, (chat_id, message_id))

    async def set_paths(
        self, job_id: str, *, input_path: str | None, output_path: str | None, archived: bool
    ) -> None:
        """Storage housekeeping moved or removed files of a finished job."""
        await self._transition(
            job_texts.SET_PATHS, (input_path, output_path, int(archived), job_id)
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
