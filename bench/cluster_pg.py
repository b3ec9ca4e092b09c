"""PostgreSQL's side of bench/cluster.py: fresh databases, and the cost of taking the next job
with a long queue, in a steady state (every job taken is finished and replaced).

The queue is filled in a few statements (generate_series) rather than one enqueue per job,
then `ClusterDB.rerank` sets the priorities as production does. `explain` gets the plans of
the same calls from auto_explain, so they are of the SQL the code really runs.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from fanslymotion.cluster.db import QUEUE, ClusterDB
from fanslymotion.cluster.store import PgStore
from fanslymotion.store.rows import NewJob
from tests.pg_server import PostgresServer

USERS = 100  # users of the queued jobs
OPERATIONS = ("fetch", "start", "rerank", "enqueue", "fair_order")


class Databases:
    """Fresh databases for the bench: on a throwaway server of its own, or on the server at
    `url` (the test suite's), where this user may create and drop databases."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.server = None if url else PostgresServer()
        self._made: list[str] = []

    def __enter__(self) -> Databases:
        if self.server is not None:
            self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()
            return
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self._made:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    @property
    def admin_url(self) -> str:
        return self.url if self.url is not None else self._server().database_url("postgres")

    def _server(self) -> PostgresServer:
        assert self.server is not None
        return self.server

    def new(self, name: str) -> str:
        """The URL of a new empty database."""
        if self.server is not None:
            return self.server.new_database(name)
        full = f"bench{os.getpid()}_{name}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(full)))
        self._made.append(full)
        return urlunsplit(urlsplit(self.admin_url)._replace(path="/" + quote(full)))

    def version(self) -> str:
        with psycopg.connect(self.admin_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"


# One statement each (psycopg binds parameters per statement).
_FILL = (
    "INSERT INTO fm_jobs (job_id, user_id, duration, resolution, motion_preset, aspect,"
    " strength, seed, steps, fps, status, created_at, started_at, completed_at, updated_at)"
    " SELECT 'done-' || u, u, 3, '360p', 'micro', 'auto', 0.5, u, 25, 4, 'completed',"
    " fm_now(), fm_now(), fm_now(), fm_now() FROM generate_series(1, %(users)s) AS u",
    "INSERT INTO fm_jobs (job_id, user_id, duration, resolution, motion_preset, aspect,"
    " strength, seed, steps, fps, status, created_at, updated_at)"
    " SELECT 'fill-' || i, 1 + mod(i, %(users)s), 3, '360p', 'micro', 'auto', 0.5, i, 25, 4,"
    " 'queued', fm_now(), fm_now() FROM generate_series(1, %(count)s) AS i",
    "SELECT procrastinate_defer_jobs_v1(ARRAY("
    " SELECT ROW(%(queue)s, 'render', 0, NULL, NULL, jsonb_build_object('job_id', job_id),"
    " NULL)::procrastinate_job_to_defer_v1 FROM fm_jobs WHERE status = 'queued' ORDER BY seq))",
    "UPDATE fm_jobs f SET pq_id = p.id FROM procrastinate_jobs p"
    " WHERE f.status = 'queued' AND p.args->>'job_id' = f.job_id",
    "ANALYZE",
)


def new_job(job_id: str, user_id: int) -> NewJob:
    """A job as the front submits it (`PgStore.create_job`, the job service's insert)."""
    photo = f"inputs/{job_id}.img"
    return NewJob(
        job_id=job_id,
        user_id=user_id,
        source="api",
        chat_id=None,
        message_id=None,
        language=None,
        duration=3,
        resolution="360p",
        motion_preset="micro",
        aspect="auto",
        strength=0.5,
        seed=1,
        steps=25,
        fps=4,
        input_path=photo,
        idempotency_key=None,
    )


async def submit(db: ClusterDB, job: NewJob) -> None:
    """The real submit path's insert: caps checked, the row and its procrastinate job in one
    transaction, the waiting jobs ranked again."""
    await PgStore(db).create_job(job, max_queued=10**9, max_active_per_user=10**9)


async def fill(db: ClusterDB, count: int) -> None:
    """`count` queued jobs of USERS users (and one finished job each, so every user has a
    turn), their procrastinate jobs, statistics, then the priorities as production sets them."""
    params = {"users": USERS, "count": count, "queue": QUEUE}
    async with db.pool.connection() as conn:
        for statement in _FILL:
            await conn.execute(statement, params if "%(" in statement else None)
    await db.rerank()


async def fetch(db: ClusterDB, worker_id: int) -> dict[str, Any]:
    """procrastinate's own fetch, as its worker runs it."""
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM procrastinate_fetch_job_v2(ARRAY[%s], %s)", (QUEUE, worker_id)
        )
        row = await cur.fetchone()
    if row is None or row["id"] is None:
        raise RuntimeError("the queue is empty")
    return row


async def finish(db: ClusterDB, pq_id: int, job_id: str) -> None:
    """The end of a render (untimed): procrastinate's job done, the row completed."""
    async with db.transaction() as conn:
        await conn.execute("SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)", (pq_id,))
        await conn.execute(
            "UPDATE fm_jobs SET status = 'completed', progress = 100,"
            " completed_at = fm_now(), updated_at = fm_now() WHERE job_id = %s",
            (job_id,),
        )


async def timed(values: list[float], call: Awaitable[Any]) -> Any:
    """`call` awaited, its ms appended to `values` (a coroutine runs nothing before that)."""
    began = time.perf_counter()
    result = await call
    values.append((time.perf_counter() - began) * 1000)
    return result


async def register(db: ClusterDB) -> int:
    async with db.pool.connection() as conn:
        cur = await conn.execute("SELECT worker_id FROM procrastinate_register_worker_v1()")
        row = await cur.fetchone()
    assert row is not None
    return int(row["worker_id"])


async def take_costs(url: str, queued: int, takes: int) -> dict[str, list[float]]:
    """ms of each operation over `takes` cycles with `queued` jobs waiting: fetch, start (with
    its re-rank), finish (untimed), enqueue of a replacement, rerank alone, the fair order."""
    times: dict[str, list[float]] = {key: [] for key in OPERATIONS}
    db = await ClusterDB.open(url, max_size=2)
    try:
        await db.migrate()
        await fill(db, queued)
        worker_id = await register(db)
        serial = itertools.count()
        for _ in range(takes):
            job = await timed(times["fetch"], fetch(db, worker_id))
            job_id, pq_id = str(job["args"]["job_id"]), int(job["id"])
            row = await timed(times["start"], db.start(job_id, pq_id, "bench", "motion"))
            if row is None:
                raise RuntimeError(f"start refused job {job_id}")
            await finish(db, pq_id, job_id)
            number = next(serial)
            new = new_job(f"more-{number}", 1 + number % USERS)
            await timed(times["enqueue"], submit(db, new))
            await timed(times["rerank"], db.rerank())
            await timed(times["fair_order"], db.fair_order(time.time()))
    finally:
        await db.close()
    return times


EXPLAIN_OPTIONS = (
    "-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=0"
    " -c auto_explain.log_analyze=on -c auto_explain.log_buffers=on"
    " -c auto_explain.log_nested_statements=on"
)


async def explain(server: PostgresServer, url: str) -> str:
    """EXPLAIN ANALYZE of every statement of one take, enqueue, rerank and fair order, from
    auto_explain in the server's log (so the SQL is exactly what the code runs)."""
    db = await ClusterDB.open(f"{url}?options={quote(EXPLAIN_OPTIONS)}", max_size=1)
    parts = []
    try:
        worker_id = await register(db)
        job = await fetch(db, worker_id)
        job_id, pq_id = str(job["args"]["job_id"]), int(job["id"])
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("fetch", lambda: fetch(db, worker_id)),
            ("start", lambda: db.start(job_id, pq_id, "bench", "motion")),
            ("enqueue", lambda: submit(db, new_job("explained", 1))),
            ("rerank", db.rerank),
            ("fair_order", lambda: db.fair_order(time.time())),
        ]
        for name, call in steps:
            offset = len(server.log())
            await call()
            await asyncio.sleep(0.2)  # the server writes its log after the statement
            parts.append(f"===== {name}\n{server.log()[offset:]}")
    finally:
        await db.close()
    return "\n".join(parts)
