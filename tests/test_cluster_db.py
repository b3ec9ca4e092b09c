"""The cluster's SQL (fanslymotion/cluster/db.py) on a real PostgreSQL: fencing, retries under
a new procrastinate job, the sweep of silent workers, fair priorities and pause."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from fanslymotion.cluster.db import PAUSED_QUEUE, QUEUE, Attempt, ClusterDB
from fanslymotion.cluster.store import PgStore
from fanslymotion.models import Phase, Progress
from fanslymotion.store import utcnow

from .test_store import new_job


@dataclass
class _Job:
    """A job as the tests submit it (`submit`)."""

    user_id: int
    job_id: str = ""
    duration: int = 3
    resolution: str = "360p"
    motion_preset: str = "pan_l"
    aspect: str = "auto"
    strength: float = 0.5
    seed: int = 1
    steps: int = 4
    fps: int = 4
    attempts: int = 0
    interruptions: int = 0
    not_before: float = 0.0
    created_at: str = ""

    def __post_init__(self) -> None:
        self.job_id = self.job_id or str(uuid.uuid4())
        self.created_at = self.created_at or utcnow()


async def submit(db: ClusterDB, job: _Job, key: str | None = None) -> bool:
    """The front's submit path into PostgreSQL (`PgStore.create_job`, as the job service
    calls it): the row and its procrastinate job in one transaction. False for a repeat of
    an idempotency key."""
    new = new_job(
        job.job_id,
        user_id=job.user_id,
        duration=job.duration,
        resolution=job.resolution,
        motion_preset=job.motion_preset,
        aspect=job.aspect,
        strength=job.strength,
        seed=job.seed,
        steps=job.steps,
        fps=job.fps,
        idempotency_key=key,
    )
    _, created = await PgStore(db).create_job(new, max_queued=1000, max_active_per_user=1000)
    return created


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[ClusterDB]:
    database = await ClusterDB.open(pg_url)
    await database.migrate()
    await database.migrate()  # a second process starting does nothing twice
    yield database
    await database.close()


async def _pq(db: ClusterDB, job_id: str) -> dict[str, object]:
    row = await db.one(
        "SELECT p.* FROM procrastinate_jobs p JOIN fm_jobs f ON f.pq_id = p.id WHERE f.job_id = %s",
        (job_id,),
    )
    assert row is not None
    return row


async def _take(db: ClusterDB, worker: str = "w1") -> tuple[str, Attempt]:
    """What a worker does: procrastinate's fetch, then our start."""
    wid = await db.one("SELECT procrastinate_register_worker_v1() AS id")
    assert wid is not None
    fetched = await db.one(
        "SELECT * FROM procrastinate_fetch_job_v2(ARRAY[%s]::varchar[], %s)", (QUEUE, wid["id"])
    )
    assert fetched is not None and fetched["id"] is not None, "nothing to take"
    job_id = str(fetched["args"]["job_id"])
    row = await db.start(job_id, int(fetched["id"]), worker, "motion")
    assert row is not None
    return job_id, Attempt(job_id, int(row["attempts"]), worker)


async def test_submit_is_one_transaction_and_idempotent(db: ClusterDB) -> None:
    job = _Job(user_id=1)
    assert await submit(db, job, key="k") is True
    assert await submit(db, job, key="k") is False  # a client's retry of a lost answer
    row = await db.job(job.job_id)
    assert row is not None and row["status"] == "queued" and row["pq_id"] is not None
    pq = await _pq(db, job.job_id)
    assert pq["status"] == "todo" and pq["queue_name"] == QUEUE
    count = await db.one("SELECT COUNT(*) AS n FROM procrastinate_jobs")
    assert count is not None and count["n"] == 1


async def test_writes_of_a_stale_attempt_are_refused(db: ClusterDB) -> None:
    await submit(db, _Job(user_id=1))
    job_id, fence = await _take(db)
    report = Progress(40.0, Phase.ANIMATING, 1, 2)
    assert await db.progress(fence, report) is True
    stale = Attempt(job_id, fence.attempt, "someone-else")
    assert await db.progress(stale, report) is False
    assert await db.holds(fence) and not await db.holds(stale)
    back = await db.requeue(fence, count_attempt=True, not_before=0.0, error="boom")
    assert back is not None and back["attempts"] == 1
    # The old attempt can no longer report, complete or fail.
    assert await db.progress(fence, report) is False
    facts = {"width": 1, "height": 1, "frames": 1, "size_bytes": 1, "render_seconds": 1.0}
    assert await db.complete(fence, {**facts, "renderer": "motion", "output_path": "x"}) is None
    assert await db.fail(fence, "late") is None
    row = await db.job(job_id)
    assert row is not None and row["status"] == "queued" and row["error"] == "boom"


async def test_a_retry_waits_out_its_backoff_under_a_new_procrastinate_job(
    db: ClusterDB,
) -> None:
    await submit(db, _Job(user_id=1))
    job_id, fence = await _take(db)
    first = await _pq(db, job_id)
    at = time.time() + 60
    back = await db.requeue(fence, count_attempt=True, not_before=at, error="the encoder failed")
    assert back is not None
    second = await _pq(db, job_id)
    assert second["id"] != first["id"] and second["status"] == "todo"
    scheduled = second["scheduled_at"]
    assert scheduled is not None and abs(scheduled.timestamp() - at) < 1  # type: ignore[attr-defined]
    wid = await db.one("SELECT procrastinate_register_worker_v1() AS id")
    assert wid is not None
    none = await db.one(
        "SELECT * FROM procrastinate_fetch_job_v2(ARRAY[%s]::varchar[], %s)", (QUEUE, wid["id"])
    )
    assert none is not None and none["id"] is None  # not before its time


async def test_the_sweep_reruns_a_silent_workers_job_then_gives_up(db: ClusterDB) -> None:
    await submit(db, _Job(user_id=1))
    for attempt in range(3):
        job_id, _ = await _take(db, f"w{attempt}")
        old = await _pq(db, job_id)
        # The worker goes silent: its heartbeat is older than the timeout.
        await db.run(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 minute'"
        )
        changed = await db.sweep(silent_for=30, max_retries=2)
        assert [row["job_id"] for row in changed] == [job_id]
        gone = await db.one("SELECT status FROM procrastinate_jobs WHERE id = %s", (old["id"],))
        assert gone is not None and gone["status"] == "failed"  # the stale one can only end
        row = await db.job(job_id)
        assert row is not None and row["interruptions"] == attempt + 1
        if attempt < 2:
            assert row["status"] == "queued" and row["attempts"] == attempt + 1
            assert (await _pq(db, job_id))["status"] == "todo"
    final = await db.job(job_id)
    assert final is not None and final["status"] == "failed" and "3 times" in final["error"]
    assert await db.sweep(silent_for=30, max_retries=2) == []


async def test_a_live_workers_job_is_not_swept(db: ClusterDB) -> None:
    await submit(db, _Job(user_id=1))
    job_id, _ = await _take(db)
    assert await db.sweep(silent_for=30, max_retries=2) == []
    row = await db.job(job_id)
    assert row is not None and row["status"] == "processing"


async def test_a_job_its_worker_still_beats_for_is_not_swept(db: ClusterDB) -> None:
    """After an outage another worker's start prunes every old procrastinate worker row, so
    the job loses its worker_id; the worker that renders it (and says so in its heartbeat)
    keeps it. Once that heartbeat is old too, it is swept."""
    await submit(db, _Job(user_id=1))
    job_id, _ = await _take(db, "w1")
    await db.register_worker("w1", "box", 1, "motion")
    await db.heartbeat("w1", "busy", job_id, "motion", "{}")
    await db.run("SELECT procrastinate_prune_stalled_workers_v1(-1)")  # every row
    assert (await _pq(db, job_id))["worker_id"] is None
    assert await db.sweep(silent_for=30, max_retries=2) == []
    row = await db.job(job_id)
    assert row is not None and row["status"] == "processing" and row["attempts"] == 0
    await db.run("UPDATE fm_workers SET last_heartbeat = now() - interval '1 minute'")
    assert [row["job_id"] for row in await db.sweep(silent_for=30, max_retries=2)] == [job_id]


async def test_a_waiting_job_without_procrastinate_job_gets_one(db: ClusterDB) -> None:
    job = _Job(user_id=1)
    await submit(db, job)
    await db.run("DELETE FROM procrastinate_jobs")  # e.g. an admin's cleanup
    changed = await db.sweep(silent_for=30, max_retries=2)
    assert [row["job_id"] for row in changed] == [job.job_id]
    assert (await _pq(db, job.job_id))["status"] == "todo"


async def test_priorities_follow_the_fair_order(db: ClusterDB) -> None:
    alice = [_Job(user_id=1) for _ in range(3)]
    bob = [_Job(user_id=2) for _ in range(2)]
    for job in [*alice, *bob]:
        await submit(db, job)
    expected = [alice[0], bob[0], alice[1], bob[1], alice[2]]
    order = [row["job_id"] for row in await db.fair_order(time.time())]
    assert order == [job.job_id for job in expected]
    taken = [(await _take(db, f"w{i}"))[0] for i in range(5)]
    assert taken == [job.job_id for job in expected]


async def test_pause_moves_waiting_jobs_where_no_worker_looks(db: ClusterDB) -> None:
    before = _Job(user_id=1)
    await submit(db, before)
    await db.set_paused(True)
    during = _Job(user_id=2)
    await submit(db, during)
    assert await db.paused()
    for job in (before, during):
        assert (await _pq(db, job.job_id))["queue_name"] == PAUSED_QUEUE
    await db.set_paused(False)
    for job in (before, during):
        assert (await _pq(db, job.job_id))["queue_name"] == QUEUE
    assert not await db.paused()


async def test_cancel_ends_both_sides_together(db: ClusterDB) -> None:
    waiting, running = _Job(user_id=1), _Job(user_id=2)
    await submit(db, running)
    job_id, _ = await _take(db)
    await submit(db, waiting)
    assert job_id == running.job_id
    before = await db.cancel(waiting.job_id)
    assert before is not None and before["status"] == "queued"
    assert (await _pq(db, waiting.job_id))["status"] == "cancelled"
    before = await db.cancel(running.job_id)
    assert before is not None and before["status"] == "processing"
    pq = await _pq(db, running.job_id)
    assert pq["status"] == "doing" and pq["abort_requested"] is True  # the worker is told
    assert await db.cancel(running.job_id) is None  # already ended


async def test_a_running_row_under_an_ended_procrastinate_job_runs_again(db: ClusterDB) -> None:
    await submit(db, _Job(user_id=1))
    job_id, _ = await _take(db)
    ended = await _pq(db, job_id)
    # The worker's last write was lost (the database was away), then its task ended.
    await db.run("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (ended["id"],))
    changed = await db.sweep(silent_for=30, max_retries=2)
    assert [row["job_id"] for row in changed] == [job_id]
    row = await db.job(job_id)
    assert row is not None and row["status"] == "queued" and row["attempts"] == 1
    assert (await _pq(db, job_id))["status"] == "todo"


async def test_a_task_that_always_dies_fails_after_max_retries(db: ClusterDB) -> None:
    """A row left rendering under an ended procrastinate job runs again, counted, and fails
    once the retries are used: a worker task that always dies does not loop for ever."""
    await submit(db, _Job(user_id=1))
    for attempt in range(3):
        job_id, _ = await _take(db, f"w{attempt}")
        ended = await _pq(db, job_id)
        await db.run("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (ended["id"],))
        assert [row["job_id"] for row in await db.sweep(silent_for=30, max_retries=2)] == [job_id]
    final = await db.job(job_id)
    assert final is not None and final["status"] == "failed" and final["attempts"] == 3
    assert await db.sweep(silent_for=30, max_retries=2) == []


async def test_a_rerun_after_a_silent_worker_keeps_its_turn(db: ClusterDB) -> None:
    """Alice's job was taken first; Bob and Carol arrived while it rendered. Its worker goes
    silent: the re-run is served before them, not behind everyone who arrived since."""
    alice = _Job(user_id=1)
    await submit(db, alice)
    taken, _ = await _take(db, "w1")
    assert taken == alice.job_id
    later = [_Job(user_id=2), _Job(user_id=3), _Job(user_id=2)]
    for job in later:
        await submit(db, job)
    await db.run("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 minute'")
    assert [row["job_id"] for row in await db.sweep(silent_for=30, max_retries=2)] == [taken]
    order = [row["job_id"] for row in await db.fair_order(time.time())]
    assert order == [alice.job_id, later[0].job_id, later[1].job_id, later[2].job_id]
    served = [(await _take(db, f"w{i + 2}"))[0] for i in range(4)]
    assert served == order
