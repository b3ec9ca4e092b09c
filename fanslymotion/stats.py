"""The operator's figures of a window (the last 24 hours or 30 days, or today): renders per
hour or day, median render time per resolution, queue wait p50/p95, failure rate. The SQL is
the store's (`store.owners`); here the window's buckets are laid out, empty ones included."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from .store import iso_utc
from .store.port import OwnerStore

Window = Literal["24h", "30d", "today"]
WINDOWS: tuple[Window, ...] = ("24h", "30d", "today")


def _buckets(window: Window, now: datetime) -> tuple[datetime, list[str], int]:
    """(start of the window, the bucket labels oldest first, the label's width in characters)."""
    now = now.astimezone(UTC)
    if window == "30d":
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        days = [day - timedelta(days=n) for n in range(29, -1, -1)]
        return days[0], [iso_utc(d)[:10] for d in days], 10
    hour = now.replace(minute=0, second=0, microsecond=0)
    if window == "today":
        start = hour.replace(hour=0)
        count = hour.hour + 1
    else:
        count = 24
        start = hour - timedelta(hours=23)
    hours = [start + timedelta(hours=n) for n in range(count)]
    return start, [iso_utc(h)[:13] for h in hours], 13


async def figures(store: OwnerStore, window: Window, now: datetime | None = None) -> dict[str, Any]:
    """The figures of `window` up to `now`: plain numbers, ready for JSON."""
    moment = now or datetime.now(UTC)
    start, labels, width = _buckets(window, moment)
    since = iso_utc(start)
    # At once: a cluster's pool runs them on several connections (SQLite takes them in turn).
    counts, per_bucket, medians, waits = await asyncio.gather(
        store.window_counts(since),
        store.renders_per_bucket(since, width),
        store.render_medians(since),
        store.wait_percentiles(since),
    )
    ended = counts["ended_completed"] + counts["ended_failed"]
    return {
        "window": window,
        "since": since,
        "bucket": "day" if width == 10 else "hour",
        "renders": [{"at": label, "count": per_bucket.get(label, 0)} for label in labels],
        "median_render_seconds": {
            resolution: {"seconds": round(seconds, 2), "renders": renders}
            for resolution, (seconds, renders) in sorted(medians.items(), key=_resolution_order)
        },
        "queue_wait_seconds": {"p50": waits["p50"], "p95": waits["p95"]},
        "jobs": counts["created"],
        "completed": counts["ended_completed"],
        "failed": counts["ended_failed"],
        "cancelled": counts["cancelled"],
        "failure_rate": round(counts["ended_failed"] / ended, 4) if ended else None,
    }


def _resolution_order(item: tuple[str, Any]) -> int:
    digits = "".join(ch for ch in item[0] if ch.isdigit())
    return int(digits) if digits else 0
