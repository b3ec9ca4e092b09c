"""The fair dispatch order (fanslymotion/fair_order.py), one SQL text, on both dialects: the
single box's SQLite store and the cluster's PostgreSQL, each case in milliseconds."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import pytest

from fanslymotion.cluster.db import Attempt, ClusterDB
from fanslymotion.store import Store

from .test_cluster_db import _Job, submit
from .test_store import new_job


class Queue(Protocol):
    """The few writes that move the order, and the order itself, in one dialect."""

    async def add(self, user_id: int) -> str: ...
    async def start(self, job_id: str) -> None: ...
    async def retry_at(self, job_id: str, at: float) -> None: ...
    async def order(self) -> list[str]: ...


class SQLiteQueue:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, user_id: int) -> str:
        job, _ = await self.store.create_job(
            new_job(str(uuid.uuid4()), user_id=user_id), max_queued=99, max_active_per_user=99
        )
        return job.job_id

    async def start(self, job_id: str) -> None:
        assert await self.store.start_job(job_id, "motion") is not None

    async def retry_at(self, job_id: str, at: float) -> None:
        await self.start(job_id)
        back = await self.store.requeue_job(job_id, count_attempt=True, not_before=at, error="x")
        assert back is not None

    async def order(self) -> list[str]:
        return await self.store.queued_ids()


class PostgresQueue:
    def __init__(self, db: ClusterDB) -> None:
        self.db = db

    async def add(self, user_id: int) -> str:
        job = _Job(user_id=user_id)
        assert await submit(self.db, job)
        return job.job_id

    async def start(self, job_id: str) -> None:
        row = await self.db.job(job_id)
        assert row is not None
        assert await self.db.start(job_id, int(row["pq_id"]), "w1", "motion") is not None

    async def retry_at(self, job_id: str, at: float) -> None:
        await self.start(job_id)
        fence = Attempt(job_id, 0, "w1")
        assert await self.db.requeue(fence, count_attempt=True, not_before=at, error="x")

    async def order(self) -> list[str]:
        return [str(row["job_id"]) for row in await self.db.fair_order(time.time())]


@pytest.fixture(params=["sqlite", "postgres"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    if request.param == "sqlite":
        store = await Store.open(tmp_path / "db.sqlite3")
        yield SQLiteQueue(store)
        await store.close()
        return
    db = await ClusterDB.open(request.getfixturevalue("pg_url"))
    await db.migrate()
    yield PostgresQueue(db)
    await db.close()


async def test_users_take_turns_round_by_round(queue: Queue) -> None:
    a1, a2, a3 = [await queue.add(1) for _ in range(3)]
    b1 = await queue.add(2)
    c1 = await queue.add(3)
    assert await queue.order() == [a1, b1, c1, a2, a3]


async def test_a_user_just_served_goes_to_the_back_of_the_round(queue: Queue) -> None:
    a1, a2 = await queue.add(1), await queue.add(1)
    b1, b2 = await queue.add(2), await queue.add(2)
    await queue.start(a1)
    assert await queue.order() == [b1, a2, b2]


async def test_a_newcomer_waits_behind_users_already_waiting(queue: Queue) -> None:
    a1, a2 = await queue.add(1), await queue.add(1)
    await queue.start(a1)
    b1 = await queue.add(2)  # after a1 started: a's turn is older
    assert await queue.order() == [a2, b1]


async def test_jobs_in_a_backoff_follow_by_its_end(queue: Queue) -> None:
    a1, b1, c1, d1 = [await queue.add(user) for user in (1, 2, 3, 4)]
    await queue.retry_at(a1, time.time() + 120)
    await queue.retry_at(b1, time.time() + 60)
    assert await queue.order() == [c1, d1, b1, a1]
