"""The webhook outbox of a cluster (`store.port.Outbox` on PostgreSQL): the events that the
trigger of `fm_jobs` wrote in the transaction of each change, whoever made it (the front or a
worker), claimed, delivered or given up by the front's `webhook.WebhookSender`."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from ..store.rows import OutboxRow, job_from
from .db import ClusterDB


class PgOutbox:
    """Queries of `fm_webhook_outbox`."""

    def __init__(self, db: ClusterDB) -> None:
        self.db = db

    async def webhooks_interrupted(self) -> int:
        return await self.db.run(
            "UPDATE fm_webhook_outbox SET status = 'pending' WHERE status = 'sending'"
        )

    async def webhooks_due(self, now: float, limit: int) -> list[OutboxRow]:
        """Pending events whose time has come, oldest first; a job's progress event waits while
        another progress event of that job is in flight."""
        rows = await self.db.rows(
            "SELECT o.msg_id AS o_msg_id, o.event AS o_event, o.attempts AS o_attempts,"
            " o.created AS o_created, o.snapshot AS o_snapshot, j.* FROM fm_webhook_outbox o"
            " JOIN fm_jobs j ON j.job_id = o.job_id"
            " WHERE o.status = 'pending' AND o.next_attempt_at <= %s"
            " AND NOT (o.event = 'progress' AND EXISTS (SELECT 1 FROM fm_webhook_outbox s"
            "  WHERE s.job_id = o.job_id AND s.event = 'progress' AND s.status = 'sending'))"
            " ORDER BY o.created LIMIT %s",
            (now, limit),
        )
        due = []
        for row in rows:
            job = replace(job_from(row), **json.loads(row["o_snapshot"]))
            url = job.webhook_url or ""
            created = float(row["o_created"])
            due.append(
                OutboxRow(
                    row["o_msg_id"], row["o_event"], url, int(row["o_attempts"]), created, job
                )
            )
        return due

    async def webhook_claim(self, msg_id: str) -> bool:
        return bool(
            await self.db.run(
                "UPDATE fm_webhook_outbox SET status = 'sending'"
                " WHERE msg_id = %s AND status = 'pending'",
                (msg_id,),
            )
        )

    async def webhook_delivered(self, msg_id: str) -> None:
        await self.db.run(
            "UPDATE fm_webhook_outbox SET status = 'delivered', attempts = attempts + 1,"
            " last_error = NULL, delivered_at = %s WHERE msg_id = %s",
            (time.time(), msg_id),
        )

    async def webhook_failed(self, msg_id: str, error: str, *, retry_at: float | None) -> None:
        await self.db.run(
            "UPDATE fm_webhook_outbox SET attempts = attempts + 1, last_error = %(error)s,"
            " status = CASE WHEN %(retry)s::float8 IS NULL THEN 'failed' ELSE 'pending' END,"
            " next_attempt_at = COALESCE(%(retry)s::float8, next_attempt_at)"
            " WHERE msg_id = %(msg)s",
            {"error": error, "retry": retry_at, "msg": msg_id},
        )

    async def webhooks_pending(self) -> int:
        row = await self.db.one(
            "SELECT COUNT(*) AS n FROM fm_webhook_outbox WHERE status IN ('pending', 'sending')"
        )
        return int(row["n"]) if row else 0
