"""The store's inside on a real SQLite file: typed insert, transitions that return their row, a
failed COMMIT rolled back, and one timestamp format for rows and cut-offs."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import aiosqlite
import pytest

from fanslymotion import datadir
from fanslymotion.store import NewJob, Store, iso_utc, parse_time

from .conftest import make_settings


def new_job(job_id: str = "00000000-0000-4000-8000-000000000001", **values: object) -> NewJob:
    fields: dict[str, object] = {
        "job_id": job_id,
        "user_id": 3,
        "source": "api",
        "chat_id": None,
        "message_id": None,
        "language": None,
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "pan_l",
        "aspect": "auto",
        "strength": 0.5,
        "seed": 7,
        "steps": 25,
        "fps": 4,
        "input_path": f"inputs/{job_id}.img",
        "idempotency_key": None,
        **values,
    }
    return NewJob(**fields)  # type: ignore[arg-type]


async def test_insert_and_transitions_return_the_committed_row(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        job, created = await store.create_job(
            new_job(seed=99, idempotency_key="k"), max_queued=5, max_active_per_user=5
        )
        assert created and job.status == "queued" and job.seed == 99 and job.user_id == 3
        started = await store.start_job(job.job_id, "motion")
        assert started is not None and started.status == "processing"
        assert started.renderer == "motion" and started.started_at is not None
        assert await store.start_job(job.job_id, "motion") is None  # the guard held
        done = await store.complete_job(
            job.job_id,
            output_path="hot/x.mp4",
            width=640,
            height=360,
            frames=12,
            size_bytes=1000,
            render_seconds=1.5,
        )
        assert done is not None and done.status == "completed" and done.frames == 12
        assert await store.fail_job(job.job_id, "late") is None
    finally:
        await store.close()
    # Another connection, as another process would read it: what was returned is what is stored.
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        row = db.execute(
            "SELECT status, output_path, seed, idempotency_key FROM jobs WHERE job_id = ?",
            (job.job_id,),
        ).fetchone()
    assert row == ("completed", "hot/x.mp4", 99, "k")


async def test_a_failed_commit_is_rolled_back(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite3")
    try:

        async def orphan_delivery(db: aiosqlite.Connection) -> None:
            # A deferred foreign key is checked at COMMIT, which then fails.
            await db.execute("PRAGMA defer_foreign_keys = ON")
            await db.execute(
                "INSERT INTO deliveries (job_id, chat_id, created_at) VALUES ('nope', 1, 'x')"
            )

        with pytest.raises(sqlite3.IntegrityError):
            await store._transaction(orphan_delivery)
        # Not left inside the transaction: the next write commits on its own and is visible
        # to another connection; the failed insert is gone.
        job, _ = await store.create_job(new_job(), max_queued=5, max_active_per_user=5)
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM jobs").fetchone() == (1,)
            assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (0,)
        assert job.status == "queued"
    finally:
        await store.close()


async def test_cutoffs_and_rows_share_one_time_format(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", archive_after_days=1, prune_after_days=2)
    store = await Store.open(settings.db_path)
    try:
        job, _ = await store.create_job(new_job(), max_queued=5, max_active_per_user=5)
        await store.start_job(job.job_id, "motion")
        (settings.hot_dir).mkdir(parents=True)
        (settings.hot_dir / "x.mp4").write_bytes(b"video")
        done = await store.complete_job(
            job.job_id,
            output_path="hot/x.mp4",
            width=1,
            height=1,
            frames=1,
            size_bytes=5,
            render_seconds=0.1,
        )
        assert done is not None and done.completed_at is not None
        completed = parse_time(done.completed_at)
        assert completed is not None
        # A cut-off on the whole second before completion, which is earlier than the row.
        # Formatted without microseconds ("...:05Z" > "...:05.3Z" as text) it used to pass the
        # row as older and archive a video a fraction of a second too young.
        whole = completed.replace(microsecond=0)
        if whole == completed:
            whole -= timedelta(seconds=1)
        assert iso_utc(whole) < done.completed_at
        assert await datadir.housekeeping(settings, store, now=whole + timedelta(days=1)) == (0, 0)
        assert (settings.hot_dir / "x.mp4").exists()
        later = completed + timedelta(days=1, microseconds=1)
        assert await datadir.housekeeping(settings, store, now=later) == (1, 0)
        assert (settings.archive_dir / "x.mp4").read_bytes() == b"video"
    finally:
        await store.close()


def _disk_rows(path: Path) -> dict[str, dict[str, object]]:
    """Every job row as another connection reads it from the file."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return {row["job_id"]: dict(row) for row in db.execute("SELECT * FROM jobs")}


@pytest.mark.serial  # a 0.3 s backoff window
async def test_the_memory_copy_is_the_database(tmp_path: Path) -> None:
    """After every kind of write, what the store answers from memory (rows and the queue in
    dispatch order) is what a fresh connection reads from the file."""
    from dataclasses import asdict

    from fanslymotion.models import Phase, Progress

    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    try:
        ids = [f"00000000-0000-4000-8000-00000000000{n}" for n in range(4)]
        for n, job_id in enumerate(ids):
            await store.create_job(
                new_job(job_id, user_id=0 if n in (0, 3) else 1),
                max_queued=9,
                max_active_per_user=9,
            )

        async def check() -> None:
            disk = _disk_rows(path)
            for job_id in ids:
                job = await store.get_job(job_id)
                assert job is not None and asdict(job) == disk[job_id], job_id
            fresh = await Store.open(path)
            try:
                expected = [j.job_id for j in (await fresh.queue(time.time()))[0]]
            finally:
                await fresh.close()
            assert [j.job_id for j in (await store.queue(time.time()))[0]] == expected

        await check()
        await store.start_job(ids[0], "motion")
        await check()
        await store.set_progress(ids[0], Progress(42.0, Phase.RENDERING))
        await check()
        await store.requeue_job(ids[0], count_attempt=True, not_before=time.time() + 0.3)
        await check()
        await store.cancel_job(ids[1], running=False)
        await store.set_progress_message(ids[2], 77)
        await check()
        await store.start_job(ids[2], "motion")
        await store.complete_job(
            ids[2],
            output_path="hot/x.mp4",
            width=1,
            height=1,
            frames=1,
            size_bytes=1,
            render_seconds=0.1,
        )
        await store.set_paths(ids[2], input_path=None, output_path=None, archived=True)
        await check()
        # The end of the retry backoff reorders the queue with no write: the copy follows.
        during = [j.job_id for j in (await store.queue(time.time()))[0]]
        assert during[-1] == ids[0]  # backing off: behind the jobs that can run now
        job = await store.get_job(ids[0])
        assert job is not None
        await asyncio.sleep(max(0.0, job.not_before - time.time()) + 0.01)
        await check()
        assert [j.job_id for j in (await store.queue(time.time()))[0]] == [ids[0], ids[3]]
    finally:
        await store.close()
