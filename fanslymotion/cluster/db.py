"""All SQL of cluster mode: the shared job rows, procrastinate's jobs, workers and flags.

Every change to a job row and to its procrastinate job happens in one transaction, and every
change to a job row notifies `fm_jobs` (a trigger), which the front listens to. Writes from a
worker are fenced: they name the job's attempt and the worker, and a row that has moved on
(re-run elsewhere, cancelled) refuses them.

Procrastinate's own SQL functions (`procrastinate_defer_jobs_v1`, `_cancel_job_v1`,
`_finish_job_v1`) are called inside our transactions so that both sides commit together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self

import psycopg
from procrastinate.schema import SchemaManager
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ..fair_order import fair_ctes
from ..retry import Interrupted, after_interruption
from ..store import job_texts
from ..store.texts import in_dialect
from ..vocabulary import Progress
from .schema import MIGRATIONS

log = logging.getLogger(__name__)

Row = dict[str, Any]
Connection = psycopg.AsyncConnection[Row]
Params = Sequence[Any] | dict[str, Any] | None

TASK = "render"  # procrastinate's task name for one render attempt
QUEUE = "render"  # the queue workers take jobs from
PAUSED_QUEUE = "render-paused"  # where waiting jobs sit while an admin pauses processing
CHANNEL = "fm_jobs"  # NOTIFY channel: the payload is a job id
TOP = 64  # waiting jobs ranked by the fair order in procrastinate's priorities; the rest wait

CONNECT_WAIT = 2  # seconds a new connection may take (psycopg's connect_timeout)
POOL_WAIT = 2.0  # seconds a request waits for a pooled connection before it fails
RECONNECT_FOR = 5.0  # seconds the pool retries a lost connection before it waits for a request

_MIGRATE_LOCK = 7_351_001
_SWEEP_LOCK = 7_351_002
_RANK_LOCK = 7_351_003

_NOTIFY = """
CREATE OR REPLACE FUNCTION fm_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fm_jobs', NEW.job_id);
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS fm_jobs_notify ON fm_jobs;
CREATE TRIGGER fm_jobs_notify AFTER INSERT OR UPDATE ON fm_jobs
    FOR EACH ROW EXECUTE FUNCTION fm_notify_job();
"""

# The dispatch order of both deployments (fair_order.py), ranked: `%(now)s` is the epoch time
# the backoffs are judged by.
_FAIR = "WITH" + fair_ctes("postgres")

_START_FIELDS = (
    "progress = 0, message = 'starting', phase = 'starting', phase_step = 0, phase_steps = 0"
)
_BACK_TO_QUEUE = (
    "status = 'queued', worker = NULL, started_at = NULL, progress = 0, phase = '',"
    " phase_step = 0, phase_steps = 0, updated_at = fm_now()"
)


@dataclass(frozen=True)
class Attempt:
    """Who renders which attempt of a job: the fence every worker write names."""

    job_id: str
    attempt: int
    worker: str


class ClusterDB:
    """A connection pool to the cluster's PostgreSQL and the queries on it."""

    def __init__(self, pool: AsyncConnectionPool[Connection], url: str) -> None:
        self.pool = pool
        self.url = url
        # Cleared while the front's listener knows the server is away: requests then answer
        # 503 at once instead of waiting for the pool.
        self.connected = asyncio.Event()
        self.connected.set()

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 8) -> Self:
        """Open the pool (waiting up to a minute for the server) without touching the schema.

        While PostgreSQL is away a request waits `POOL_WAIT` seconds at most for a connection
        (then a 503), not the pool's default 30 s; a lost connection is retried for
        `RECONNECT_FOR` seconds (delays 1, 2, 2) and then again at the next request, so the
        pool's own backoff never grows past seconds and the front serves soon after the
        database is back."""
        # psycopg_pool warns about every failed reconnect, in several lines; the front's
        # listener logs one line per change of state (lost, back) with the reason instead.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        deadline = time.monotonic() + 60
        while True:  # the server may still be starting: the pool gives up on it too soon
            try:
                first = await psycopg.AsyncConnection.connect(url, connect_timeout=CONNECT_WAIT)
                await first.close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": CONNECT_WAIT},
            check=AsyncConnectionPool.check_connection,
            name="fanslymotion",
            timeout=POOL_WAIT,
            reconnect_timeout=RECONNECT_FOR,
        )
        await pool.open(wait=True, timeout=60)
        return cls(pool, url)

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> None:
        """Raises unless the server answers, on a connection of its own: a refused connect
        answers in milliseconds, where the pool would wait for its own reconnect."""
        conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=CONNECT_WAIT)
        async with conn:
            await conn.execute("SELECT 1")

    async def reachable(self) -> bool:
        """Within a second, never the pool's wait: the listener's word, or, while it has not
        reconnected yet (the server may be back already), one direct look."""
        if self.connected.is_set():
            return True
        try:
            async with asyncio.timeout(1.0):
                await self.ping()
        except (psycopg.Error, OSError, TimeoutError):
            return False
        return True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    async def one(self, sql: str, params: Params = None) -> Row | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

    async def run(self, sql: str, params: Params = None) -> int:
        """A statement without an answer; the rows it changed."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount

    async def rows(self, sql: str, params: Params = None) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    # -- schema -------------------------------------------------------------------------------

    async def migrate(self) -> int:
        """Create procrastinate's schema and ours, or bring ours up to date; safe to run from
        every process at once (an advisory lock makes them take turns). Returns the schema's
        version after: above len(MIGRATIONS) when newer code migrated it."""
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            cur = await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS ok")
            row = await cur.fetchone()
            if not (row and row["ok"]):
                await conn.execute(SchemaManager.get_schema())
                log.info("procrastinate's schema created")
            await conn.execute("CREATE TABLE IF NOT EXISTS fm_schema (version integer NOT NULL)")
            cur = await conn.execute("SELECT COALESCE(MAX(version), 0) AS version FROM fm_schema")
            row = await cur.fetchone()
            version = int(row["version"]) if row else 0
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                await conn.execute(script)
                await conn.execute("INSERT INTO fm_schema (version) VALUES (%s)", (number,))
                log.info("cluster schema migrated to version %d", number)
            await conn.execute(_NOTIFY)
        return max(version, len(MIGRATIONS))

    async def schema_ready(self) -> bool:
        row = await self.one("SELECT to_regclass('fm_jobs') IS NOT NULL AS ok")
        return bool(row and row["ok"])

    # -- the front's writes -------------------------------------------------------------------

    async def retry(self, job: Any) -> bool:
        """failed -> queued again: an operator's retry, as the attempt the front counted, with a
        new procrastinate job. False when the row is not failed (retried already)."""
        async with self.transaction() as conn:
            cur = await conn.execute(
                "UPDATE fm_jobs SET status = 'queued', attempts = %s, error = NULL, progress = 0,"
                " message = 'queued', phase = '', phase_step = 0, phase_steps = 0,"
                " not_before = 0, worker = NULL, started_at = NULL, completed_at = NULL,"
                " updated_at = fm_now() WHERE job_id = %s AND status = 'failed' RETURNING job_id",
                (job.attempts, job.job_id),
            )
            if await cur.fetchone() is None:
                return False
            await defer_in(conn, job.job_id, 0.0)
            await rerank_in(conn, None)
        return True

    async def cancel(self, job_id: str) -> Row | None:
        """queued|processing -> cancelled with its procrastinate job (a running one is asked
        to abort, which reaches its worker by NOTIFY). The row before, or None."""
        async with self.transaction() as conn:
            cur = await conn.execute(
                "SELECT status, pq_id, worker FROM fm_jobs WHERE job_id = %s FOR UPDATE",
                (job_id,),
            )
            before = await cur.fetchone()
            if before is None or before["status"] not in ("queued", "processing"):
                return None
            await conn.execute(
                "UPDATE fm_jobs SET status = 'cancelled', message = 'cancelled',"
                " completed_at = fm_now(), updated_at = fm_now() WHERE job_id = %s",
                (job_id,),
            )
            if before["pq_id"] is not None:
                await conn.execute(
                    "SELECT procrastinate_cancel_job_v1(%s, %s, false)",
                    (before["pq_id"], before["status"] == "processing"),
                )
        return before

    async def complete(self, fence: Attempt, facts: dict[str, Any]) -> Row | None:
        """processing -> completed, only for the attempt that renders it now: the fence is
        checked on the locked row, then the completion is both deployments' text."""
        async with self.transaction() as conn:
            cur = await conn.execute(
                "SELECT 1 AS ok FROM fm_jobs WHERE job_id = %s AND status = 'processing'"
                " AND attempts = %s AND worker = %s FOR UPDATE",
                (fence.job_id, fence.attempt, fence.worker),
            )
            if await cur.fetchone() is None:
                return None
            cur = await conn.execute(
                in_dialect(job_texts.COMPLETE, "postgres"),
                (
                    facts["output_path"],
                    facts["width"],
                    facts["height"],
                    facts["frames"],
                    facts["size_bytes"],
                    facts["render_seconds"],
                    fence.job_id,
                ),
            )
            return await cur.fetchone()

    async def holds(self, fence: Attempt) -> bool:
        """True while `fence` is the job's running attempt."""
        row = await self.one(
            "SELECT 1 AS ok FROM fm_jobs WHERE job_id = %s AND status = 'processing'"
            " AND attempts = %s AND worker = %s",
            (fence.job_id, fence.attempt, fence.worker),
        )
        return row is not None

    async def set_paused(self, paused: bool) -> None:
        """Pause: waiting jobs move to a queue no worker takes from (new ones go there too);
        resume moves them back. Running jobs finish."""
        source, target = (QUEUE, PAUSED_QUEUE) if paused else (PAUSED_QUEUE, QUEUE)
        async with self.transaction() as conn:
            await conn.execute(
                "INSERT INTO fm_flags (name, value) VALUES ('paused', %s)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                ("1" if paused else "0",),
            )
            await conn.execute(
                "UPDATE procrastinate_jobs SET queue_name = %s"
                " WHERE status = 'todo' AND queue_name = %s",
                (target, source),
            )

    async def paused(self) -> bool:
        row = await self.one("SELECT value FROM fm_flags WHERE name = 'paused'")
        return bool(row and row["value"] == "1")

    # -- reads --------------------------------------------------------------------------------

    async def job(self, job_id: str) -> Row | None:
        return await self.one("SELECT * FROM fm_jobs WHERE job_id = %s", (job_id,))

    async def jobs(self, job_ids: list[str]) -> list[Row]:
        return await self.rows("SELECT * FROM fm_jobs WHERE job_id = ANY(%s)", (job_ids,))

    async def active(self) -> list[Row]:
        return await self.rows(
            "SELECT * FROM fm_jobs WHERE status IN ('queued', 'processing') ORDER BY seq"
        )

    async def fair_order(self, now: float) -> list[Row]:
        """The waiting jobs in the order the workers take them (job_id, pq_id, rank)."""
        return await self.rows(
            _FAIR + "SELECT fair.job_id, f.pq_id, fair.rank FROM fair"
            " JOIN fm_jobs f ON f.job_id = fair.job_id ORDER BY fair.rank",
            {"now": now},
        )

    async def workers(self, silent_for: float) -> list[Row]:
        """Every worker with its state; one silent for `silent_for` seconds is `lost`."""
        return await self.rows(
            "SELECT name, host, pid, renderer, renderer_state, jobs_done, started_at, version,"
            " CASE WHEN state IN ('stopped', 'refused') THEN state"
            "  WHEN last_heartbeat < now() - make_interval(secs => %(silent)s) THEN 'lost'"
            "  ELSE state END AS state,"
            " CASE WHEN state = 'busy' AND last_heartbeat >= now()"
            "  - make_interval(secs => %(silent)s) THEN job_id END AS job_id,"
            " to_char(last_heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            " AS last_heartbeat,"
            " extract(epoch FROM now() - last_heartbeat)::float AS heartbeat_age"
            " FROM fm_workers"
            # A worker the front refused (a wrong token) shows for one timeout, then leaves.
            " WHERE NOT (state = 'refused'"
            "  AND last_heartbeat < now() - make_interval(secs => %(silent)s))"
            " ORDER BY name",
            {"silent": silent_for},
        )

    # -- the shared upkeep: fair priorities and stalled workers ----------------------------------

    async def rerank(self, now: float | None = None) -> int:
        """Give the first TOP waiting jobs of the fair order procrastinate priorities TOP..1 (it
        serves the highest first) and every other waiting job 0. Returns the rows changed."""
        async with self.transaction() as conn:
            return await rerank_in(conn, now)

    async def backoff_ended(self, since: float, now: float) -> bool:
        """Whether a waiting job's retry backoff ended in (since, now]: its rank changes."""
        row = await self.one(
            "SELECT EXISTS (SELECT 1 FROM fm_jobs WHERE status = 'queued'"
            " AND not_before > %s AND not_before <= %s) AS ended",
            (since, now),
        )
        return bool(row and row["ended"])

    async def sweep(self, silent_for: float, max_retries: int) -> list[Row]:
        """Re-run the jobs of workers silent for `silent_for` seconds (each counts an attempt; past
        `max_retries` the job fails: a photo that kills workers must not loop), and give a job
        left waiting without a procrastinate job a new one. One process sweeps at a time.
        Returns the job rows changed."""
        async with self.transaction() as conn:
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok", (_SWEEP_LOCK,))
            got = await cur.fetchone()
            if not (got and got["ok"]):
                return []
            # A worker whose own heartbeat says it still renders the job keeps it, even where
            # procrastinate lost track (another worker's start prunes every procrastinate
            # worker row an outage left old, and its jobs lose their worker_id).
            cur = await conn.execute(
                "SELECT j.id FROM procrastinate_jobs j"
                " LEFT JOIN procrastinate_workers w ON w.id = j.worker_id"
                " WHERE j.status = 'doing' AND j.queue_name IN (%(queue)s, %(paused)s)"
                " AND (j.worker_id IS NULL"
                "  OR w.last_heartbeat < now() - make_interval(secs => %(silent)s))"
                " AND NOT EXISTS (SELECT 1 FROM fm_jobs f JOIN fm_workers fw"
                "  ON fw.name = f.worker AND fw.job_id = f.job_id"
                "  WHERE f.pq_id = j.id AND f.status = 'processing' AND fw.state = 'busy'"
                "  AND fw.last_heartbeat >= now() - make_interval(secs => %(silent)s))"
                " FOR UPDATE OF j SKIP LOCKED",
                {"queue": QUEUE, "paused": PAUSED_QUEUE, "silent": silent_for},
            )
            stalled = [int(row["id"]) for row in await cur.fetchall()]
            for pq_id in stalled:
                # A new procrastinate job per attempt: the stale worker, should it come back,
                # finishes only its own (dead) one, never the re-run's.
                await conn.execute(
                    "SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (pq_id,)
                )
            changed = await _rerun_stalled(conn, stalled, max_retries)
            changed += await _redefer_orphans(conn, max_retries)
            if changed:
                await rerank_in(conn, None)
        return changed

    # -- the worker's writes --------------------------------------------------------------------

    async def register_worker(
        self, name: str, host: str, pid: int, renderer: str, version: str = ""
    ) -> None:
        await self.run(
            "INSERT INTO fm_workers (name, host, pid, renderer, state, started_at, version)"
            " VALUES (%s, %s, %s, %s, 'loading', fm_now(), %s)"
            " ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
            " renderer = excluded.renderer, state = 'loading', job_id = NULL,"
            " started_at = excluded.started_at, last_heartbeat = now(),"
            " version = excluded.version",
            (name, host, pid, renderer, version),
        )

    async def heartbeat(
        self, name: str, state: str, job_id: str | None, renderer: str, renderer_state: str
    ) -> None:
        await self.run(
            "UPDATE fm_workers SET state = %s, job_id = %s, renderer = %s,"
            " renderer_state = %s::jsonb, last_heartbeat = now() WHERE name = %s",
            (state, job_id, renderer, renderer_state, name),
        )

    async def procrastinate_heartbeat(self, worker_id: int) -> None:
        await self.run("SELECT procrastinate_update_heartbeat_v1(%s)", (worker_id,))

    async def prune(self, keep_hours: float) -> int:
        """Forget what nobody needs any more: ended procrastinate jobs (and their events)
        older than `keep_hours` and workers silent for a day. Job rows stay: they are the
        store of record (a job's history), as on one box. Returns the rows removed."""
        removed = 0
        removed += await self.run(
            "DELETE FROM procrastinate_jobs p"
            " WHERE p.status IN ('succeeded', 'failed', 'cancelled', 'aborted')"
            " AND NOT EXISTS (SELECT 1 FROM procrastinate_events e WHERE e.job_id = p.id"
            "  AND e.at > now() - make_interval(secs => %s))",
            (keep_hours * 3600,),
        )
        removed += await self.run(
            "DELETE FROM fm_workers WHERE last_heartbeat < now() - interval '1 day'"
        )
        return removed

    async def worker_done(self, name: str) -> None:
        await self.run("UPDATE fm_workers SET jobs_done = jobs_done + 1 WHERE name = %s", (name,))

    async def start(self, job_id: str, pq_id: int, worker: str, renderer: str) -> Row | None:
        """queued -> processing for the procrastinate job a worker fetched; None when the row
        moved on meanwhile (cancelled, or re-deferred under another procrastinate job)."""
        row = await self.one(
            "UPDATE fm_jobs SET status = 'processing', worker = %s, renderer = %s,"
            f" started_at = fm_now(), updated_at = fm_now(), error = NULL, {_START_FIELDS}"
            " WHERE job_id = %s AND status = 'queued' AND pq_id = %s RETURNING *",
            (worker, renderer, job_id, pq_id),
        )
        if row is not None:
            await self.rerank()  # the user's turn moved: their next job goes back
        return row

    async def progress(self, fence: Attempt, progress: Progress) -> bool:
        """Live progress of the running attempt; False when the fence no longer holds."""
        row = await self.one(
            "UPDATE fm_jobs SET progress = %s, message = %s, phase = %s, phase_step = %s,"
            " phase_steps = %s, updated_at = fm_now()"
            " WHERE job_id = %s AND status = 'processing' AND attempts = %s AND worker = %s"
            " RETURNING job_id",
            (
                round(progress.percent, 1),
                progress.message,
                progress.phase,
                progress.step,
                progress.steps,
                fence.job_id,
                fence.attempt,
                fence.worker,
            ),
        )
        return row is not None

    async def requeue(
        self, fence: Attempt, *, count_attempt: bool, not_before: float, error: str | None
    ) -> Row | None:
        """processing -> queued under a new procrastinate job: a retry after an error
        (counted) or a worker that stops (not counted)."""
        async with self.transaction() as conn:
            cur = await conn.execute(
                f"UPDATE fm_jobs SET {_BACK_TO_QUEUE}, attempts = attempts + %s,"
                " not_before = %s, error = %s, message = %s"
                " WHERE job_id = %s AND status = 'processing' AND attempts = %s AND worker = %s"
                " RETURNING *",
                (
                    1 if count_attempt else 0,
                    not_before,
                    error,
                    "waiting to retry" if error else "queued",
                    fence.job_id,
                    fence.attempt,
                    fence.worker,
                ),
            )
            row = await cur.fetchone()
            if row is not None:
                row["pq_id"] = await defer_in(conn, fence.job_id, not_before)
                await rerank_in(conn, None)
        return row

    async def fail(self, fence: Attempt, error: str) -> Row | None:
        return await self.one(
            "UPDATE fm_jobs SET status = 'failed', message = 'failed', error = %s,"
            " completed_at = fm_now(), updated_at = fm_now()"
            " WHERE job_id = %s AND status = 'processing' AND attempts = %s AND worker = %s"
            " RETURNING *",
            (error, fence.job_id, fence.attempt, fence.worker),
        )


async def rerank_in(conn: Connection, now: float | None) -> int:
    """The re-rank inside the caller's transaction, so the priorities commit with the change
    that moved them. Re-ranks take turns (a lock), and a fetch skips the rows one holds: after
    a change the workers are woken again, as procrastinate wakes them for a new job."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_RANK_LOCK,))
    cur = await conn.execute(
        _FAIR + ", wanted AS (SELECT f.pq_id, (%(top)s + 1 - fair.rank)::int AS priority"
        "  FROM fair JOIN fm_jobs f ON f.job_id = fair.job_id"
        "  WHERE fair.rank <= %(top)s AND f.pq_id IS NOT NULL),"
        " ids AS (SELECT id FROM procrastinate_jobs WHERE status = 'todo'"
        "  AND priority > 0 UNION SELECT pq_id FROM wanted)"
        " UPDATE procrastinate_jobs p SET priority = COALESCE(w.priority, 0)"
        " FROM ids LEFT JOIN wanted w ON w.pq_id = ids.id"
        " WHERE p.id = ids.id AND p.status = 'todo'"
        " AND p.priority IS DISTINCT FROM COALESCE(w.priority, 0)",
        {"now": _epoch(now), "top": TOP},
    )
    changed = cur.rowcount
    if changed:
        await conn.execute(
            "SELECT pg_notify(channel, %s) FROM unnest(ARRAY[%s, 'procrastinate_any_queue_v1'])"
            " AS channel",
            ('{"type": "job_inserted", "job_id": null}', f"procrastinate_queue_v1#{QUEUE}"),
        )
    return changed


def _epoch(now: float | None) -> float:
    return time.time() if now is None else now


async def forget_worker_in(conn: Connection, row: Row) -> None:
    """The cluster's one step beside a shared text (`store.job_texts`) that sends a row back to
    the queue: the row no longer belongs to the worker that ran it (SQLite's jobs have none)."""
    await conn.execute("UPDATE fm_jobs SET worker = NULL WHERE job_id = %s", (row["job_id"],))
    row["worker"] = None


async def defer_in(conn: Connection, job_id: str, not_before: float) -> int:
    """A procrastinate job for the next attempt of `job_id`, on the queue the pause flag says,
    recorded in the job row. Inside the caller's transaction."""
    cur = await conn.execute(
        "SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW("
        " CASE WHEN EXISTS (SELECT 1 FROM fm_flags WHERE name = 'paused' AND value = '1')"
        "  THEN %(paused)s ELSE %(queue)s END,"
        " %(task)s, 0, NULL, NULL, jsonb_build_object('job_id', %(job_id)s::text),"
        " CASE WHEN %(not_before)s > 0 THEN to_timestamp(%(not_before)s) END"
        ")::procrastinate_job_to_defer_v1]))[1] AS id",
        {
            "paused": PAUSED_QUEUE,
            "queue": QUEUE,
            "task": TASK,
            "job_id": job_id,
            "not_before": not_before,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    pq_id = int(row["id"])
    await conn.execute("UPDATE fm_jobs SET pq_id = %s WHERE job_id = %s", (pq_id, job_id))
    return pq_id


async def _rerun_stalled(
    conn: Connection,
    stalled: list[int],
    max_retries: int,
    message: str = "queued after a worker stopped",
) -> list[Row]:
    """The job rows of stalled procrastinate jobs: back to the queue as a new attempt, or
    failed past `max_retries` (the retry policy's crash-loop guard)."""
    if not stalled:
        return []
    cur = await conn.execute(
        "SELECT job_id, attempts, interruptions FROM fm_jobs"
        " WHERE pq_id = ANY(%s) AND status = 'processing' FOR UPDATE",
        (stalled,),
    )
    silent = Interrupted("the worker stopped answering")
    changed: list[Row] = []
    for left in await cur.fetchall():
        after = after_interruption(
            max_retries, silent, int(left["attempts"]), int(left["interruptions"])
        )
        if after.status == "failed":
            done = await conn.execute(
                in_dialect(job_texts.INTERRUPTED_FAILED, "postgres"), (after.error, left["job_id"])
            )
        else:
            done = await conn.execute(
                in_dialect(job_texts.INTERRUPTED_REQUEUE, "postgres"),
                (message, left["job_id"]),
            )
        row = await done.fetchone()
        assert row is not None  # locked above
        if row["status"] == "queued":
            await forget_worker_in(conn, row)
            row["pq_id"] = await defer_in(conn, row["job_id"], 0.0)
        changed.append(row)
    return changed


async def _redefer_orphans(conn: Connection, max_retries: int) -> list[Row]:
    """Waiting jobs whose procrastinate job is gone or ended (a crash between two writes, an
    admin's cleanup): each gets a new one, so no waiting job is forgotten."""
    cur = await conn.execute(
        "SELECT f.job_id, f.not_before FROM fm_jobs f"
        " LEFT JOIN procrastinate_jobs p ON p.id = f.pq_id"
        " WHERE f.status = 'queued' AND (p.id IS NULL OR p.status NOT IN ('todo', 'doing'))"
        " FOR UPDATE OF f SKIP LOCKED"
    )
    rows = list(await cur.fetchall())
    for row in rows:
        row["pq_id"] = await defer_in(conn, row["job_id"], float(row["not_before"]))
    # A worker writes the row's end before its procrastinate job ends; a row still rendering
    # under an ended job lost that write (the database was away, or the worker's task died):
    # it runs again, counted, and past MAX_RETRIES it fails (a task that always dies would
    # loop for ever otherwise).
    cur = await conn.execute(
        "SELECT f.pq_id FROM fm_jobs f JOIN procrastinate_jobs p ON p.id = f.pq_id"
        " WHERE f.status = 'processing'"
        " AND p.status IN ('succeeded', 'failed', 'aborted', 'cancelled')"
    )
    ended = [int(row["pq_id"]) for row in await cur.fetchall()]
    return rows + await _rerun_stalled(conn, ended, max_retries, "queued after a lost result")
