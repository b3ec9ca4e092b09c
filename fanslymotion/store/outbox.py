"""The webhook outbox: events the triggers wrote, claimed, delivered or given up. The query
texts are `texts`', which a cluster's PostgreSQL runs too."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from . import texts as sql
from .base import Base
from .rows import Job, OutboxRow


def outbox_row(job: Job, row: Any) -> OutboxRow:
    """A `texts.WEBHOOKS_DUE` row (either dialect's) with the job as it was at its event."""
    assert job.webhook_url is not None
    job = replace(job, **json.loads(row["o_snapshot"]))
    url = job.webhook_url or ""
    created = float(row["o_created"])
    return OutboxRow(row["o_msg_id"], row["o_event"], url, int(row["o_attempts"]), created, job)


def webhook_summary(row: Any) -> dict[str, Any] | None:
    """A `texts.WEBHOOK_SUMMARY` row as {delivered, pending, failed, attempts, last_error}."""
    if row is None or not row["events"]:
        return None
    return {
        "delivered": int(row["delivered"]),
        "pending": int(row["pending"]),
        "failed": int(row["failed"]),
        "attempts": int(row["attempts"]),
        "last_error": row["last_error"],
    }


class WebhookOutbox(Base):
    """Queries of the webhook outbox."""

    async def webhooks_interrupted(self) -> int:
        """At start: deliveries the last process left in flight are due again (same id)."""
        return await self._update(sql.WEBHOOKS_INTERRUPTED, ())

    async def webhooks_due(self, now: float, limit: int) -> list[OutboxRow]:
        """Pending events whose time has come, oldest first (`texts.WEBHOOKS_DUE`)."""
        due = []
        for row in await self._fetchall(sql.WEBHOOKS_DUE, (now, limit)):
            job = self._job(row)
            assert job is not None
            due.append(outbox_row(job, row))
        return due

    async def webhook_claim(self, msg_id: str) -> bool:
        """pending -> sending, committed before the request goes out."""
        return bool(await self._update(sql.WEBHOOK_CLAIM, (msg_id,)))

    async def webhook_delivered(self, msg_id: str) -> None:
        await self._update(sql.WEBHOOK_DELIVERED, (time.time(), msg_id))

    async def webhook_failed(self, msg_id: str, error: str, *, retry_at: float | None) -> None:
        """One more failed attempt: due again at `retry_at`, or given up (None)."""
        await self._update(sql.WEBHOOK_FAILED, (error, retry_at, retry_at, msg_id))

    async def webhooks_pending(self) -> int:
        row = await self._fetchone(sql.WEBHOOKS_PENDING)
        return int(row[0]) if row else 0

    async def webhook_summary(self, job_id: str) -> dict[str, Any] | None:
        """{delivered, pending, failed, attempts, last_error} of a job's events; None without any."""
        return webhook_summary(await self._fetchone(sql.WEBHOOK_SUMMARY, (job_id, job_id)))
