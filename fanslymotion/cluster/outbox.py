"""The webhook outbox of a cluster (`store.port.Outbox` on PostgreSQL): the events that the
trigger of `fm_jobs` wrote in the transaction of each change, whoever made it (the front or a
worker), claimed, delivered or given up by the front's `webhook.WebhookSender`. The query
texts are the single box's (`store.texts`)."""

from __future__ import annotations

import functools
import time

from ..store import texts as sql
from ..store.outbox import outbox_row
from ..store.rows import OutboxRow, job_from
from .db import ClusterDB


@functools.cache
def pg(text: str) -> str:
    """A `store.texts` query as PostgreSQL runs it."""
    return sql.in_dialect(text, "postgres")


class PgOutbox:
    """Queries of `fm_webhook_outbox`."""

    def __init__(self, db: ClusterDB) -> None:
        self.db = db

    async def webhooks_interrupted(self) -> int:
        return await self.db.run(pg(sql.WEBHOOKS_INTERRUPTED))

    async def webhooks_due(self, now: float, limit: int) -> list[OutboxRow]:
        rows = await self.db.rows(pg(sql.WEBHOOKS_DUE), (now, limit))
        return [outbox_row(job_from(row), row) for row in rows]

    async def webhook_claim(self, msg_id: str) -> bool:
        return bool(await self.db.run(pg(sql.WEBHOOK_CLAIM), (msg_id,)))

    async def webhook_delivered(self, msg_id: str) -> None:
        await self.db.run(pg(sql.WEBHOOK_DELIVERED), (time.time(), msg_id))

    async def webhook_failed(self, msg_id: str, error: str, *, retry_at: float | None) -> None:
        await self.db.run(pg(sql.WEBHOOK_FAILED), (error, retry_at, retry_at, msg_id))

    async def webhooks_pending(self) -> int:
        row = await self.db.one(pg(sql.WEBHOOKS_PENDING))
        return int(row["n"]) if row else 0
