"""The bot's tables: the delivery outbox of videos, aiogram's FSM, users and flags. The query
texts are `texts`', which a cluster's PostgreSQL runs too."""

from __future__ import annotations

import json
import time
from typing import Any

import aiosqlite

from . import texts as sql
from .base import Base
from .rows import Delivery, Job, UserName, utcnow


class BotTables(Base):
    """Queries of the bot's tables."""

    # -- deliveries (Telegram outbox) ---------------------------------------------------------

    async def due_deliveries(self, now: float | None = None, limit: int = 20) -> list[Delivery]:
        rows = await self._fetchall(
            sql.DELIVERIES_DUE, (time.time() if now is None else now, limit)
        )
        return [Delivery(**dict(row)) for row in rows]

    async def get_delivery(self, job_id: str) -> Delivery | None:
        row = await self._fetchone(sql.DELIVERY, (job_id,))
        return Delivery(**dict(row)) if row is not None else None

    async def delivery_claim(self, job_id: str) -> bool:
        """pending -> sending, committed before the upload starts (see the deliveries table)."""
        return bool(await self._update(sql.DELIVERY_CLAIM, (job_id,)))

    async def delivery_sent(self, job_id: str, file_id: str | None) -> bool:
        return bool(await self._update(sql.DELIVERY_SENT, (file_id, utcnow(), job_id)))

    async def interrupt_deliveries(self) -> list[Delivery]:
        """At start: uploads a dead process left `sending` become `interrupted`; returns them."""

        async def statements(db: aiosqlite.Connection) -> list[Delivery]:
            async with db.execute(sql.DELIVERIES_INTERRUPT) as cur:
                return [Delivery(**dict(row)) for row in await cur.fetchall()]

        return await self._transaction(statements)

    async def delivery_retry(self, job_id: str) -> bool:
        """interrupted -> pending: the user asked for the video after an interrupted upload."""
        return bool(await self._update(sql.DELIVERY_RETRY, (job_id,)))

    async def delivery_failed(self, job_id: str, error: str, *, retry_at: float | None) -> None:
        """A failed send: retried at `retry_at`, or undeliverable when it is None."""
        await self._update(sql.DELIVERY_FAILED, (error, retry_at, retry_at, job_id))

    async def undelivered(self, user_id: int) -> list[Delivery]:
        """The user's videos given up as undeliverable whose file is still kept, oldest first."""
        rows = await self._fetchall(sql.UNDELIVERED, (user_id,))
        return [Delivery(**dict(row)) for row in rows]

    async def redeliver(self, job_id: str) -> bool:
        """undeliverable -> pending, with fresh attempts: the user is reachable again."""
        return bool(await self._update(sql.REDELIVER, (job_id,)))

    async def sent_videos(self, user_id: int, limit: int = 10) -> list[tuple[Job, Delivery]]:
        rows = await self._fetchall(sql.SENT_VIDEOS, (user_id, limit))
        result = []
        for row in rows:
            job = self._job(row)
            assert job is not None
            result.append((job, sent_delivery(job.job_id, row)))
        return result

    # -- bot state ----------------------------------------------------------------------------

    async def fsm_get(self, key: str) -> tuple[str | None, dict[str, Any]]:
        row = await self._fetchone(sql.FSM_GET, (key,))
        if row is None:
            return None, {}
        return row["state"], json.loads(row["data"])

    async def fsm_set_state(self, key: str, state: str | None) -> None:
        await self._update(sql.FSM_SET_STATE, (key, state))

    async def fsm_set_data(self, key: str, data: dict[str, Any]) -> None:
        await self._update(sql.FSM_SET_DATA, (key, json.dumps(data)))

    async def get_language(self, user_id: int) -> str | None:
        row = await self._fetchone(sql.LANGUAGE, (user_id,))
        return str(row[0]) if row and row[0] else None

    async def set_language(self, user_id: int, language: str) -> None:
        await self._update(sql.SET_LANGUAGE, (user_id, language))

    async def set_blocked(self, user_id: int, blocked: bool) -> None:
        await self._update(sql.SET_BLOCKED, (user_id, int(blocked)))

    async def unblock(self, user_id: int) -> bool:
        """Clear the user's `blocked` flag; True when it was set."""
        return bool(await self._update(sql.UNBLOCK, (user_id,)))

    async def set_name(self, user_id: int, name: UserName) -> None:
        await self._update(sql.SET_NAME, (user_id, *name))

    async def get_name(self, user_id: int) -> UserName | None:
        row = await self._fetchone(sql.NAME, (user_id,))
        return UserName(*tuple(row)) if row is not None and row[0] is not None else None

    async def get_flag(self, name: str) -> str | None:
        row = await self._fetchone(sql.FLAG, (name,))
        return str(row[0]) if row else None

    async def set_flag(self, name: str, value: str) -> None:
        await self._update(sql.SET_FLAG, (name, value))


def sent_delivery(job_id: str, row: Any) -> Delivery:
    """The delivery half of a `texts.SENT_VIDEOS` row (either dialect's)."""
    return Delivery(
        job_id,
        row["d_chat"],
        row["d_status"],
        row["d_attempts"],
        row["d_next"],
        row["d_file_id"],
        row["d_error"],
        row["d_created"],
        row["d_sent"],
    )
