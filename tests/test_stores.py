"""The stores of record of both deployments behave alike, case by case: the single box's SQLite
(`store.Store`) and a cluster's PostgreSQL (`cluster.store.PgStore` with `PgOutbox`, on the
session's server). A Telegram job's delivery is written by the transaction that completes it,
the webhook events by the transaction of each change, the bot's tables keep what it says."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from fanslymotion import stats
from fanslymotion.errors import TooManyJobs
from fanslymotion.store import OwnerRule, Store, UserName, iso_utc
from fanslymotion.store.port import BotStore, Outbox, OwnerStore
from fanslymotion.vocabulary import Phase, Progress

from .test_job_service import store_of
from .test_store import new_job


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[BotStore, Outbox]]:
    async with store_of(request.param, request, tmp_path / "db.sqlite3") as store:
        if isinstance(store, Store):
            yield store, store
            return
        from fanslymotion.cluster.outbox import PgOutbox
        from fanslymotion.cluster.store import PgStore

        assert isinstance(store, PgStore)
        yield store, PgOutbox(store.db)


async def test_a_telegram_job_is_delivered_from_its_completing_transaction(
    stores: tuple[BotStore, Outbox],
) -> None:
    store, _ = stores
    new = new_job(source="telegram", chat_id=77, message_id=5, idempotency_key="k")
    job, created = await store.create_job(new, max_queued=5, max_active_per_user=5)
    assert created and job.status == "queued" and job.chat_id == 77
    again, created = await store.create_job(new, max_queued=5, max_active_per_user=5)
    assert not created and again.job_id == job.job_id
    assert await store.queue_position(job.job_id) == 1
    assert await store.get_delivery(job.job_id) is None
    started = await store.start_job(job.job_id, "motion")
    assert started is not None and started.status == "processing"
    done = await store.complete_job(
        job.job_id,
        output_path="hot/x.mp4",
        width=640,
        height=360,
        frames=12,
        size_bytes=1000,
        render_seconds=1.5,
    )
    assert done is not None and done.status == "completed" and done.progress == 100
    delivery = await store.get_delivery(job.job_id)
    assert delivery is not None and (delivery.status, delivery.chat_id) == ("pending", 77)
    assert [d.job_id for d in await store.due_deliveries()] == [job.job_id]
    assert await store.delivery_claim(job.job_id)
    assert not await store.delivery_claim(job.job_id)  # claimed once
    assert await store.delivery_sent(job.job_id, "file-1")
    ((sent_job, sent),) = await store.sent_videos(3)
    assert sent_job.job_id == job.job_id and (sent.status, sent.file_id) == ("sent", "file-1")
    assert await store.render_times() == [(("motion", "360p", 12, 25), 1.5)]


async def test_caps_the_fair_order_and_a_retry_without_its_phase(
    stores: tuple[BotStore, Outbox],
) -> None:
    store, _ = stores
    ids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 5)]
    for job_id, user in zip(ids, (1, 1, 1, 2), strict=True):
        await store.create_job(new_job(job_id, user_id=user), max_queued=10, max_active_per_user=3)
    with pytest.raises(TooManyJobs) as refused:
        await store.create_job(new_job("x", user_id=1), max_queued=10, max_active_per_user=3)
    assert refused.value.details["cap"] == "user"
    # Round robin: user 2's first job before user 1's second.
    assert [j.job_id for j in await store.queued_ahead(ids[2])] == [ids[0], ids[3], ids[1]]
    running = await store.start_job(ids[0], "motion")
    assert running is not None
    await store.set_progress(ids[0], Progress(50.0, Phase.RENDERING, 2, 4))
    seen = await store.get_job(ids[0])
    assert seen is not None and (seen.progress, seen.phase, seen.phase_step) == (
        50.0,
        "rendering",
        2,
    )
    back = await store.requeue_job(ids[0], count_attempt=True, not_before=1e12, error="a fault")
    assert back is not None and (back.status, back.attempts, back.error) == ("queued", 1, "a fault")
    assert (back.phase, back.phase_step, back.phase_steps, back.progress) == ("", 0, 0, 0)
    found, ahead = await store.job_and_queue_ahead(ids[0])
    assert found is not None and len(ahead) == 3  # waiting out its backoff: last
    cancelled = await store.cancel_job(ids[1], running=False)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert await store.cancel_job(ids[1], running=False) is None  # the guard held
    counts = await store.counts_by_status()
    assert (counts["queued"], counts["cancelled"]) == (2 + 1, 1)
    assert [j.job_id for j in await store.list_jobs(user_id=2)] == [ids[3]]


async def test_webhook_events_are_written_with_the_changes(stores: tuple[BotStore, Outbox]) -> None:
    store, outbox = stores
    events = json.dumps(["started", "progress", "completed"])
    job, _ = await store.create_job(
        new_job(webhook_url="https://hooks.example/x", webhook_events=events),
        max_queued=5,
        max_active_per_user=5,
    )
    await store.start_job(job.job_id, "motion")
    for percent in (10.0, 20.0):  # progress events coalesce: the latest wins
        await store.set_progress(job.job_id, Progress(percent, Phase.RENDERING, 1, 2))
    await store.complete_job(
        job.job_id,
        output_path="hot/x.mp4",
        width=640,
        height=360,
        frames=12,
        size_bytes=1000,
        render_seconds=1.5,
    )
    due = await outbox.webhooks_due(now=1e12, limit=10)
    assert [(row.event, row.job.status, row.job.progress) for row in due] == [
        ("started", "processing", 0),
        ("progress", "processing", 20.0),
        ("completed", "completed", 100),
    ]
    assert all(row.url == "https://hooks.example/x" for row in due)
    assert await outbox.webhook_claim(due[0].msg_id)
    await outbox.webhook_delivered(due[0].msg_id)
    await outbox.webhook_failed(due[1].msg_id, "HTTP 500", retry_at=None)
    assert await outbox.webhooks_pending() == 1
    summary = await store.webhook_summary(job.job_id)
    assert summary == {
        "delivered": 1,
        "pending": 1,
        "failed": 1,
        "attempts": 2,
        "last_error": "HTTP 500",
    }


async def test_the_bots_tables_keep_what_it_says(stores: tuple[BotStore, Outbox]) -> None:
    store, _ = stores
    assert await store.fsm_get("k") == (None, {})
    await store.fsm_set_state("k", "Menu:main")
    await store.fsm_set_data("k", {"duration": 6})
    assert await store.fsm_get("k") == ("Menu:main", {"duration": 6})
    assert await store.get_language(9) is None
    await store.set_language(9, "ru")
    await store.set_blocked(9, True)
    assert await store.get_language(9) == "ru"
    assert await store.unblock(9) and not await store.unblock(9)
    assert await store.get_flag("finals") is None
    await store.set_flag("finals", "a b")
    assert await store.get_flag("finals") == "a b"


async def _set_times(store: BotStore, where: Path, job_id: str, *times: str) -> None:
    """A job's times (made, started, ended) moved to known moments (the store writes the
    clock's); `where` is the SQLite file of the `stores` fixture."""
    from fanslymotion.cluster.store import PgStore

    if isinstance(store, PgStore):
        await store.db.run(
            "UPDATE fm_jobs SET created_at = %s, started_at = %s, completed_at = %s"
            " WHERE job_id = %s",
            (*times, job_id),
        )
        return
    with sqlite3.connect(where) as db:
        db.execute(
            "UPDATE jobs SET created_at = ?, started_at = ?, completed_at = ? WHERE job_id = ?",
            (*times, job_id),
        )


def _owners_of(store: BotStore) -> OwnerStore:
    from fanslymotion.cluster.owners import PgOwners
    from fanslymotion.cluster.store import PgStore

    return PgOwners(store.db) if isinstance(store, PgStore) else cast(OwnerStore, store)


async def test_the_figures_mean_the_same_in_both_dialects(
    stores: tuple[BotStore, Outbox], tmp_path: Path
) -> None:
    store, _ = stores
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    # Waits of 1, 2, 3, 4 and 30 s (and one of 7.5 s long ago, outside the window).
    waits = (1.0, 2.0, 3.0, 4.0, 30.0, 7.5)
    for index, wait in enumerate(waits):
        job, _ = await store.create_job(
            new_job(f"00000000-0000-4000-8000-0000000001{index:02d}", user_id=index),
            max_queued=10,
            max_active_per_user=5,
        )
        await store.start_job(job.job_id, "motion")
        await store.complete_job(
            job.job_id,
            output_path="hot/x.mp4",
            width=640,
            height=360,
            frames=12,
            size_bytes=1000,
            render_seconds=float(index + 1),
        )
        made = now - timedelta(hours=2 if index < 5 else 30, minutes=index)
        started = made + timedelta(seconds=wait)
        ended = started + timedelta(seconds=index + 1)
        await _set_times(
            store,
            tmp_path / "db.sqlite3",
            job.job_id,
            iso_utc(made),
            iso_utc(started),
            iso_utc(ended),
        )
    day = await stats.figures(_owners_of(store), "24h", now)
    # Nearest rank on both: the wait at offset int((n - 1) * share) in wait order.
    assert day["queue_wait_seconds"] == {"p50": 3.0, "p95": 4.0}
    assert day["median_render_seconds"] == {"360p": {"seconds": 3.0, "renders": 5}}
    assert (day["jobs"], day["completed"], day["failure_rate"]) == (5, 5, 0.0)
    assert sum(point["count"] for point in day["renders"]) == 5
    month = await stats.figures(_owners_of(store), "30d", now)
    assert month["queue_wait_seconds"] == {"p50": 3.0, "p95": 7.5}
    assert month["median_render_seconds"] == {"360p": {"seconds": 3.5, "renders": 6}}


async def test_a_telegram_users_name_is_kept_and_named_in_the_owners_view(
    stores: tuple[BotStore, Outbox],
) -> None:
    store, _ = stores
    owners = _owners_of(store)
    assert await store.get_name(1001) is None
    await store.set_language(1001, "en")  # a row before the name: the name joins it
    await store.set_name(1001, UserName("Alice", None, None))
    await store.set_name(1001, UserName("Alice", "Liddell", "alice_l"))  # changed: replaced
    assert await store.get_name(1001) == UserName("Alice", "Liddell", "alice_l")
    assert await store.get_language(1001) == "en"
    await store.set_name(1002, UserName("Борис"))
    await store.create_job(
        new_job(user_id=1001, source="telegram", chat_id=1001), max_queued=5, max_active_per_user=5
    )
    await store.create_job(
        new_job("00000000-0000-4000-8000-000000000002", user_id=1001),
        max_queued=5,
        max_active_per_user=5,
    )
    await owners.set_owner_rule("telegram", 1002, OwnerRule(daily_seconds=30))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await owners.owners(iso_utc(today), iso_utc(today - timedelta(days=29)))
    named = {
        (r["source"], r["user_id"]): (r["first_name"], r["last_name"], r["username"]) for r in rows
    }
    assert named == {
        ("telegram", 1001): ("Alice", "Liddell", "alice_l"),
        ("telegram", 1002): ("Борис", None, None),
        ("api", 1001): (None, None, None),  # the same number as an API caller: no name
    }


async def test_caps_and_idempotency_keys_belong_to_the_owner(
    stores: tuple[BotStore, Outbox],
) -> None:
    """Telegram user 7001 and API user 7001 are two owners: each reaches their own cap, and the
    same idempotency key names each one's own job."""
    store, _ = stores
    made: dict[str, list[str]] = {"telegram": [], "api": []}
    for n in range(2):
        for source in ("telegram", "api"):
            job_id = f"00000000-0000-4000-8000-0000000070{n}{int(source == 'api')}"
            job, created = await store.create_job(
                new_job(job_id, user_id=7001, source=source, idempotency_key=f"k{n}"),
                max_queued=10,
                max_active_per_user=2,
            )
            assert created and (job.source, job.user_id) == (source, 7001)
            made[source].append(job.job_id)
    assert made["telegram"] != made["api"]
    for source in ("telegram", "api"):
        await store.check_caps(source, 7002, max_queued=10, max_active_per_user=2)
        with pytest.raises(TooManyJobs) as refused:
            await store.check_caps(source, 7001, max_queued=10, max_active_per_user=2)
        assert refused.value.details["cap"] == "user"
        with pytest.raises(TooManyJobs):
            await store.create_job(
                new_job(
                    f"00000000-0000-4000-8000-00000000709{len(source)}", source=source, user_id=7001
                ),
                max_queued=10,
                max_active_per_user=2,
            )
        for n in range(2):
            found = await store.job_by_idempotency_key(source, 7001, f"k{n}")
            assert found is not None and found.job_id == made[source][n]
            again, created = await store.create_job(
                new_job(
                    f"00000000-0000-4000-8000-00000000708{n}",
                    user_id=7001,
                    source=source,
                    idempotency_key=f"k{n}",
                ),
                max_queued=10,
                max_active_per_user=2,
            )
            assert not created and again.job_id == made[source][n]
    assert await store.job_by_idempotency_key("api", 7002, "k0") is None


async def test_a_jobs_photo_pixels_come_back_with_its_render_time(
    stores: tuple[BotStore, Outbox],
) -> None:
    """The ETA counts the photo's pixels: kept with the job, read back with its measured time
    (0 for a row that has none, as rows made before the column)."""
    store, _ = stores
    for n, pixels in enumerate((48_000_000, None)):
        job, _ = await store.create_job(
            new_job(f"00000000-0000-4000-8000-00000000060{n}", photo_pixels=pixels),
            max_queued=5,
            max_active_per_user=5,
        )
        assert job.photo_pixels == pixels
        await store.start_job(job.job_id, "motion")
        await store.complete_job(
            job.job_id,
            output_path=f"hot/{n}.mp4",
            width=640,
            height=360,
            frames=12,
            size_bytes=1000,
            render_seconds=2.0 + n,
        )
    assert await store.render_work() == [
        (("motion", "360p", 12, 25, 48_000_000), 2.0),
        (("motion", "360p", 12, 25, 0), 3.0),
    ]
    assert await store.render_times() == [
        (("motion", "360p", 12, 25), 2.0),
        (("motion", "360p", 12, 25), 3.0),
    ]


_ENDED = ("status", "progress", "message", "phase", "phase_step", "phase_steps", "output_path")


def _read_back(store: BotStore, path: Path, job_id: str) -> dict[str, Any]:
    """The completed row as the database holds it (not the store's copy)."""
    if isinstance(store, Store):
        with sqlite3.connect(path) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return dict(row)
    import psycopg
    from psycopg.rows import dict_row

    from fanslymotion.cluster.store import PgStore

    assert isinstance(store, PgStore)
    with psycopg.connect(store.db.url, row_factory=dict_row) as conn:
        found = conn.execute("SELECT * FROM fm_jobs WHERE job_id = %s", (job_id,)).fetchone()
    assert found is not None
    return dict(found)


async def test_completion_is_one_row_in_both_dialects(
    stores: tuple[BotStore, Outbox], tmp_path: Path
) -> None:
    """Both deployments end a job with the same row: progress 100 and the terminal events'
    phase `done`, whatever the render last reported; a cluster worker's fenced completion
    writes that row too."""
    store, _ = stores
    job, _ = await store.create_job(new_job(), max_queued=5, max_active_per_user=5)
    await store.start_job(job.job_id, "motion")
    await store.set_progress(job.job_id, Progress(99.0, Phase.FINISHING, 3, 4))
    await store.complete_job(
        job.job_id,
        output_path="hot/x.mp4",
        width=640,
        height=360,
        frames=12,
        size_bytes=1000,
        render_seconds=1.5,
    )
    row = _read_back(store, tmp_path / "db.sqlite3", job.job_id)
    ended = tuple(row[name] for name in _ENDED)
    assert ended == ("completed", 100, "done", "done", 0, 0, "hot/x.mp4")
    assert (row["size_bytes"], row["render_seconds"], row["error"]) == (1000, 1.5, None)
    assert row["completed_at"] and row["updated_at"]
    if isinstance(store, Store):
        return
    from fanslymotion.cluster.db import Attempt
    from fanslymotion.cluster.store import PgStore

    assert isinstance(store, PgStore)
    other, _ = await store.create_job(
        new_job("00000000-0000-4000-8000-000000000701"), max_queued=5, max_active_per_user=5
    )
    queued = _read_back(store, tmp_path / "db.sqlite3", other.job_id)
    assert await store.db.start(other.job_id, int(queued["pq_id"]), "w1", "motion") is not None
    await store.set_progress(other.job_id, Progress(99.0, Phase.FINISHING, 3, 4))
    facts = {"width": 640, "height": 360, "frames": 12, "render_seconds": 1.5}
    assert await store.db.complete(
        Attempt(other.job_id, 0, "w1"), {**facts, "size_bytes": 1000, "output_path": "hot/x.mp4"}
    )
    row = _read_back(store, tmp_path / "db.sqlite3", other.job_id)
    assert tuple(row[name] for name in _ENDED) == ended
