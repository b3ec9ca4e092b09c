"""The webhook outbox: events the triggers wrote, claimed, delivered or given up."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from .base import Base
from .rows import OutboxRow


class WebhookOutbox(Base):
    """Queries of the webhook outbox."""

    # -- webhooks (outbox) --------------------------------------------------------------------

    async def webhooks_interrupted(self) -> int:
        """At start: deliveries the last process left in flight are due again (same id)."""
        return await self._update(
            "UPDATE webhook_outbox SET status = 'pending' WHERE status = 'sending'", ()
        )

    async def webhooks_due(self, now: float, limit: int) -> list[OutboxRow]:
        """Pending events whose time has come, oldest first; a job's progress event waits while
        another progress event of that job is in flight."""
        rows = await self._fetchall(
            "SELECT o.msg_id AS o_msg_id, o.event AS o_event, o.attempts AS o_attempts,"
            " o.created AS o_created, o.snapshot AS o_snapshot, j.* FROM webhook_outbox o"
            " JOIN jobs j ON j.job_id = o.job_id"
            " WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
            " AND NOT (o.event = 'progress' AND EXISTS (SELECT 1 FROM webhook_outbox s"
            "  WHERE s.job_id = o.job_id AND s.event = 'progress' AND s.status = 'sending'))"
            " ORDER BY o.created LIMIT ?",
            (now, limit),
        )
        due = []
        for row in rows:
            job = self._job(row)
            assert job is not None and job.webhook_url is not None
            job = replace(job, **json.loads(row["o_snapshot"]))
            due.append(
                OutboxRow(
                    row["o_msg_id"],
                    row["o_event"],
                    job.webhook_url or "",
                    int(row["o_attempts"]),
                    float(row["o_created"]),
                    job,
                )
            )
        return due

    async def webhook_claim(self, msg_id: str) -> bool:
        """pending -> sending, committed before the request goes out."""
        return bool(
            await self._update(
                "UPDATE webhook_outbox SET status = 'sending' WHERE msg_id = ? AND status = 'pending'",
                (msg_id,),
            )
        )

    async def webhook_delivered(self, msg_id: str) -> None:
        await self._update(
            "UPDATE webhook_outbox SET status = 'delivered', attempts = attempts + 1,"
            " last_error = NULL, delivered_at = ? WHERE msg_id = ?",
            (time.time(), msg_id),
        )

    async def webhook_failed(self, msg_id: str, error: str, *, retry_at: float | None) -> None:
        """One more failed attempt: due again at `retry_at`, or given up (None)."""
        await self._update(
            "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = ?,"
            " status = CASE WHEN ? IS NULL THEN 'failed' ELSE 'pending' END,"
            " next_attempt_at = COALESCE(?, next_attempt_at) WHERE msg_id = ?",
            (error, retry_at, retry_at, msg_id),
        )

    async def webhooks_pending(self) -> int:
        row = await self._fetchone(
            "SELECT COUNT(*) FROM webhook_outbox WHERE status IN ('pending', 'sending')"
        )
        return int(row[0]) if row else 0

    async def webhook_summary(self, job_id: str) -> dict[str, Any] | None:
        """{delivered, pending, failed, attempts, last_error} of a job's events; None without any."""
        row = await self._fetchone(
            "SELECT COUNT(*) AS events, COALESCE(SUM(status = 'delivered'), 0) AS delivered,"
            " COALESCE(SUM(status IN ('pending', 'sending')), 0) AS pending,"
            " COALESCE(SUM(status = 'failed'), 0) AS failed,"
            " COALESCE(SUM(attempts), 0) AS attempts,"
            " (SELECT last_error FROM webhook_outbox WHERE job_id = ?1 AND last_error IS NOT NULL"
            "  ORDER BY created DESC LIMIT 1) AS last_error"
            " FROM webhook_outbox WHERE job_id = ?1",
            (job_id,),
        )
        if row is None or not row["events"]:
            return None
        return {
            "delivered": int(row["delivered"]),
            "pending": int(row["pending"]),
            "failed": int(row["failed"]),
            "attempts": int(row["attempts"]),
            "last_error": row["last_error"],
        }
