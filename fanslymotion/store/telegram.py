"""The bot's tables: the delivery outbox of videos, aiogram's FSM, users and flags."""

from __future__ import annotations

import json
import time
from typing import Any

import aiosqlite

from .base import Base
from .rows import Delivery, Job, utcnow


class BotTables(Base):
    """Queries of the bot's tables."""

    # -- deliveries (Telegram outbox) ---------------------------------------------------------

    async def due_deliveries(self, now: float | None = None, limit: int = 20) -> list[Delivery]:
        rows = await self._fetchall(
            "SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY created_at LIMIT ?",
            (time.time() if now is None else now, limit),
        )
        return [Delivery(**dict(row)) for row in rows]

    async def get_delivery(self, job_id: str) -> Delivery | None:
        row = await self._fetchone("SELECT * FROM deliveries WHERE job_id = ?", (job_id,))
        return Delivery(**dict(row)) if row is not None else None

    async def delivery_claim(self, job_id: str) -> bool:
        """pending -> sending, committed before the upload starts (see the deliveries table)."""
        return bool(
            await self._update(
                "UPDATE deliveries SET status = 'sending', attempts = attempts + 1"
                " WHERE job_id = ? AND status = 'pending'",
                (job_id,),
            )
        )

    async def delivery_sent(self, job_id: str, file_id: str | None) -> bool:
        return bool(
            await self._update(
                "UPDATE deliveries SET status = 'sent', file_id = ?, sent_at = ?"
                " WHERE job_id = ? AND status = 'sending'",
                (file_id, utcnow(), job_id),
            )
        )

    async def interrupt_deliveries(self) -> list[Delivery]:
        """At start: uploads a dead process left `sending` become `interrupted`; returns them."""

        async def statements(db: aiosqlite.Connection) -> list[Delivery]:
            async with db.execute(
                "UPDATE deliveries SET status = 'interrupted' WHERE status = 'sending' RETURNING *"
            ) as cur:
                return [Delivery(**dict(row)) for row in await cur.fetchall()]

        return await self._transaction(statements)

    async def delivery_retry(self, job_id: str) -> bool:
        """interrupted -> pending: the user asked for the video after an interrupted upload."""
        return bool(
            await self._update(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = 0"
                " WHERE job_id = ? AND status = 'interrupted'",
                (job_id,),
            )
        )

    async def delivery_failed(self, job_id: str, error: str, *, retry_at: float | None) -> None:
        """A failed send: retried at `retry_at`, or undeliverable when it is None."""
        await self._update(
            "UPDATE deliveries SET last_error = ?,"
            " status = CASE WHEN ? IS NULL THEN 'undeliverable' ELSE 'pending' END,"
            " next_attempt_at = COALESCE(?, next_attempt_at)"
            " WHERE job_id = ? AND status IN ('pending', 'sending')",
            (error, retry_at, retry_at, job_id),
        )

    async def undelivered(self, user_id: int) -> list[Delivery]:
        """The user's videos given up as undeliverable whose file is still kept, oldest first."""
        rows = await self._fetchall(
            "SELECT d.* FROM deliveries d JOIN jobs j USING (job_id)"
            " WHERE j.user_id = ? AND d.status = 'undeliverable' AND j.output_path IS NOT NULL"
            " ORDER BY d.created_at",
            (user_id,),
        )
        return [Delivery(**dict(row)) for row in rows]

    async def redeliver(self, job_id: str) -> bool:
        """undeliverable -> pending, with fresh attempts: the user is reachable again."""
        return bool(
            await self._update(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = 0, attempts = 0"
                " WHERE job_id = ? AND status = 'undeliverable'",
                (job_id,),
            )
        )

    async def sent_videos(self, user_id: int, limit: int = 10) -> list[tuple[Job, Delivery]]:
        rows = await self._fetchall(
            "SELECT j.*, d.status AS d_status, d.attempts AS d_attempts,"
            " d.next_attempt_at AS d_next, d.file_id AS d_file_id, d.last_error AS d_error,"
            " d.created_at AS d_created, d.sent_at AS d_sent, d.chat_id AS d_chat"
            " FROM jobs j JOIN deliveries d USING (job_id)"
            " WHERE j.user_id = ? AND d.status = 'sent' ORDER BY d.sent_at DESC LIMIT ?",
            (user_id, limit),
        )
        result = []
        for row in rows:
            job = self._job(row)
            assert job is not None
            delivery = Delivery(
                job.job_id,
                row["d_chat"],
                row["d_status"],
                row["d_attempts"],
                row["d_next"],
                row["d_file_id"],
                row["d_error"],
                row["d_created"],
                row["d_sent"],
            )
            result.append((job, delivery))
        return result

    # -- bot state ----------------------------------------------------------------------------

    async def fsm_get(self, key: str) -> tuple[str | None, dict[str, Any]]:
        row = await self._fetchone("SELECT state, data FROM fsm WHERE key = ?", (key,))
        if row is None:
            return None, {}
        return row["state"], json.loads(row["data"])

    async def fsm_set_state(self, key: str, state: str | None) -> None:
        await self._update(
            "INSERT INTO fsm (key, state) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET state = excluded.state",
            (key, state),
        )

    async def fsm_set_data(self, key: str, data: dict[str, Any]) -> None:
        await self._update(
            "INSERT INTO fsm (key, data) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET data = excluded.data",
            (key, json.dumps(data)),
        )

    async def get_language(self, user_id: int) -> str | None:
        row = await self._fetchone("SELECT language FROM users WHERE user_id = ?", (user_id,))
        return str(row[0]) if row and row[0] else None

    async def set_language(self, user_id: int, language: str) -> None:
        await self._update(
            "INSERT INTO users (user_id, language) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET language = excluded.language",
            (user_id, language),
        )

    async def set_blocked(self, user_id: int, blocked: bool) -> None:
        await self._update(
            "INSERT INTO users (user_id, blocked) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET blocked = excluded.blocked",
            (user_id, int(blocked)),
        )

    async def unblock(self, user_id: int) -> bool:
        """Clear the user's `blocked` flag; True when it was set."""
        return bool(
            await self._update(
                "UPDATE users SET blocked = 0 WHERE user_id = ? AND blocked = 1", (user_id,)
            )
        )

    async def get_flag(self, name: str) -> str | None:
        row = await self._fetchone("SELECT value FROM flags WHERE name = ?", (name,))
        return str(row[0]) if row else None

    async def set_flag(self, name: str, value: str) -> None:
        await self._update(
            "INSERT INTO flags (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
