"""The one-time move of a front's SQLite into the cluster's PostgreSQL, for a front of the
previous version (which kept its own copy of each job): the request side of every job (chat,
photo, idempotency key, webhook) joins its shared row, jobs PostgreSQL never had arrive whole
(the sweep gives a waiting one its procrastinate job), and the bot's tables and the webhook
outbox follow. The file is then renamed (`fanslymotion.db.moved`), so it happens once and the
front keeps no second copy."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

from .db import ClusterDB, Connection

log = logging.getLogger(__name__)

Rows = list[dict[str, Any]]

# SQLite's table -> PostgreSQL's, with the columns whose conflict decides (nothing replaced).
_TABLES = {
    "deliveries": ("fm_deliveries", "job_id"),
    "fsm": ("fm_fsm", "key"),
    "users": ("fm_users", "user_id"),
    "webhook_outbox": ("fm_webhook_outbox", "msg_id"),
}


def _read(path: Path) -> dict[str, Rows]:
    """Every row of the tables that move, in the order they were made."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {
            table: [dict(row) for row in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]
            for table in ("jobs", "flags", *_TABLES)
            if table in names
        }


async def _columns(conn: Connection, table: str) -> set[str]:
    cur = await conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
    )
    return {str(row["column_name"]) for row in await cur.fetchall()}


async def _insert(conn: Connection, table: str, key: str, rows: Rows, update: list[str]) -> None:
    """Each row into `table` (the columns both sides have); on a conflict the columns in
    `update` are filled in where PostgreSQL has none yet."""
    known = await _columns(conn, table)
    for row in rows:
        names = [name for name in row if name in known]
        fill = [name for name in update if name in names]
        action = (
            "DO UPDATE SET "
            + ", ".join(f"{name} = COALESCE({table}.{name}, excluded.{name})" for name in fill)
            if fill
            else "DO NOTHING"
        )
        await conn.execute(
            f"INSERT INTO {table} ({', '.join(names)})"  # names from both schemas, not input
            f" VALUES ({', '.join('%s' for _ in names)}) ON CONFLICT ({key}) {action}",
            [row[name] for name in names],
        )


# The request side of a job, which only the front's SQLite had.
_FRONT = [
    "source",
    "chat_id",
    "message_id",
    "progress_message_id",
    "language",
    "input_path",
    "idempotency_key",
    "request_digest",
    "webhook_url",
    "webhook_events",
]


async def move_front_sqlite(path: Path, db: ClusterDB) -> bool:
    """Move the SQLite at `path` into PostgreSQL in one transaction, then rename it; False
    when there is none."""
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, path.exists):
        return False
    tables = await loop.run_in_executor(None, _read, path)
    async with db.transaction() as conn:
        await _insert(conn, "fm_jobs", "job_id", tables.get("jobs", []), _FRONT)
        flags = [row for row in tables.get("flags", []) if row["name"] != "paused"]
        await _insert(conn, "fm_flags", "name", flags, [])
        for table, (target, key) in _TABLES.items():
            await _insert(conn, target, key, tables.get(table, []), [])
    for suffix in ("", "-wal", "-shm"):
        old = path.with_name(path.name + suffix)
        if await loop.run_in_executor(None, old.exists):
            await loop.run_in_executor(None, old.rename, old.with_name(old.name + ".moved"))
    log.info(
        "moved the front's SQLite into PostgreSQL (%d jobs); it is kept as %s.moved",
        len(tables.get("jobs", [])),
        path.name,
    )
    return True
