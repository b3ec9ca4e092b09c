"""A front of the previous version kept its own SQLite copy of each job; the first start with
PostgreSQL as the one store of record moves it there once: the request side of a shared row,
a job PostgreSQL never had, the bot's tables, and the file set aside."""

from __future__ import annotations

from pathlib import Path

from fanslymotion.cluster.db import ClusterDB
from fanslymotion.cluster.store import PgStore
from fanslymotion.cluster.upgrade import move_front_sqlite
from fanslymotion.store import Job, Store

from .test_store import new_job


async def _mirrored(db: ClusterDB, job: Job) -> None:
    """The row the previous version's front mirrored into PostgreSQL: the render's fields."""
    fields = "job_id user_id duration resolution motion_preset aspect strength seed steps fps"
    fields += " attempts interruptions not_before"
    await db.run(
        f"INSERT INTO fm_jobs ({', '.join(fields.split())}, status, created_at, updated_at)"
        f" VALUES ({', '.join(['%s'] * len(fields.split()))}, 'queued', %s, fm_now())",
        (*(getattr(job, name) for name in fields.split()), job.created_at),
    )


async def test_the_front_sqlite_moves_into_postgresql_once(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "fanslymotion.db"
    old = await Store.open(path)
    shared = new_job("00000000-0000-4000-8000-00000000000a", source="telegram", chat_id=42)
    only_here = new_job("00000000-0000-4000-8000-00000000000b", user_id=4)
    done, _ = await old.create_job(shared, max_queued=5, max_active_per_user=5)
    waiting, _ = await old.create_job(only_here, max_queued=5, max_active_per_user=5)
    db = await ClusterDB.open(pg_url)
    await db.migrate()
    await _mirrored(db, done)  # the render side, as the previous version wrote it
    await db.run("UPDATE fm_jobs SET status = 'completed' WHERE job_id = %s", (done.job_id,))
    await old.start_job(done.job_id, "motion")
    await old.complete_job(
        done.job_id,
        output_path="hot/a.mp4",
        width=640,
        height=360,
        frames=12,
        size_bytes=10,
        render_seconds=1.0,
    )
    await old.fsm_set_state("bot:42", "Menu:main")
    await old.set_language(42, "ru")
    await old.close()
    try:
        assert await move_front_sqlite(path, db)
        assert not path.exists() and (tmp_path / "fanslymotion.db.moved").exists()
        assert not await move_front_sqlite(path, db)  # once
        store = PgStore(db)
        moved = await store.get_job(done.job_id)
        assert moved is not None and (moved.source, moved.chat_id) == ("telegram", 42)
        assert moved.status == "completed"
        assert moved.input_path == done.input_path
        arrived = await store.get_job(waiting.job_id)
        assert arrived is not None and arrived.status == "queued" and arrived.user_id == 4
        delivery = await store.get_delivery(done.job_id)
        assert delivery is not None and delivery.chat_id == 42
        assert await store.fsm_get("bot:42") == ("Menu:main", {})
        assert await store.get_language(42) == "ru"
        # The sweep gives the job PostgreSQL never had its procrastinate job.
        await db.sweep(30.0, 3)
        row = await db.job(waiting.job_id)
        assert row is not None and row["pq_id"] is not None
    finally:
        await db.close()
