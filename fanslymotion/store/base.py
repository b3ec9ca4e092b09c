"""The store's connection: opening and migrating the database, transactions, and the
write-through copy of rows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite

from .rows import _JOB_COLUMNS, Job, utcnow
from .schema import MIGRATIONS

log = logging.getLogger(__name__)

T = TypeVar("T")

# Rows kept in memory (the write-through copy below): the live ones and the latest others.
ROW_CACHE = 4096


class Base:
    """The connection and its plumbing, shared by the store's parts. Create the store with
    `await Store.open(path)`.

    The service is the only writer of its database (the data folder's lock sees to that), so
    the store keeps a write-through copy of the rows it has read or written, and the queue in
    dispatch order until the next write that can reorder it: status polls, the most frequent
    request, are answered from memory. Every write to `jobs` refreshes the copy from its
    `RETURNING` row (or patches it: progress); any other write to `jobs` drops it.
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._write = asyncio.Lock()
        self._rows: OrderedDict[str, Job] = OrderedDict()
        self._version = 0  # bumped by every committed write that may reorder the queue
        self._writes = 0  # bumped by every transaction
        self._queue: tuple[int, float, list[Job]] | None = None  # (version, valid until, queue)

    @classmethod
    async def open(cls, path: Path) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = sqlite3.Row
        store = cls(db)
        try:
            await store._setup()
        except BaseException:
            # aiosqlite's connection thread would keep the process alive after the error.
            await db.close()
            raise
        return store

    async def _setup(self) -> None:
        # The clock of the texts both dialects share (job_texts): PostgreSQL's schema has it too.
        await self._db.create_function("fm_now", 0, utcnow)
        await self._db.execute("PRAGMA journal_mode = WAL")
        await self._db.execute("PRAGMA synchronous = NORMAL")
        await self._db.execute("PRAGMA foreign_keys = ON")
        # A second process (a test, an admin's sqlite3 shell) may hold the lock briefly.
        await self._db.execute("PRAGMA busy_timeout = 5000")
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(
                f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
            log.info("database migrated to version %d", number)

    async def close(self) -> None:
        await self._db.close()

    # -- plumbing ---------------------------------------------------------------------------

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        # busy_timeout makes SQLite itself wait out another process's lock.
        async with self._db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def _fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _transaction(
        self, statements: Callable[[aiosqlite.Connection], Awaitable[T]], *, reorders: bool = True
    ) -> T:
        """Run `statements` in one IMMEDIATE transaction under the write lock, committed on return.

        Anything that fails, the COMMIT included (a deferred constraint, a full disk), rolls
        back: the connection never stays inside a transaction that every later write would
        then join. `reorders=False`: the write cannot change the queue's order (progress)."""
        async with self._write:
            self._writes += 1
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                result = await statements(self._db)
                await self._db.execute("COMMIT")
            except BaseException:
                # A read meanwhile may have seen what is now undone: drop the copy.
                self._rows.clear()
                self._queue = None
                # SQLite may have rolled back already (then ROLLBACK says so: nothing to undo).
                with contextlib.suppress(sqlite3.Error):
                    await self._db.execute("ROLLBACK")
                raise
            if reorders:
                self._version += 1
            return result

    async def _update(self, sql: str, params: Iterable[Any]) -> int:
        """One guarded UPDATE in its own transaction; returns the number of rows changed."""

        async def statements(db: aiosqlite.Connection) -> int:
            cur = await db.execute(sql, tuple(params))
            return cur.rowcount

        changed = await self._transaction(statements)
        if sql.lstrip().upper().startswith("UPDATE JOBS"):
            self._rows.clear()  # rows changed without RETURNING: the copy cannot be trusted
        return changed

    async def _transition(self, sql: str, params: Iterable[Any]) -> Job | None:
        """One guarded `UPDATE ... RETURNING *`: the changed row, or None when the guard held."""

        async def statements(db: aiosqlite.Connection) -> Job | None:
            async with db.execute(sql, tuple(params)) as cur:
                return self._job(await cur.fetchone())

        return self._remember(await self._transaction(statements))

    def _remember(self, job: Job | None) -> Job | None:
        """Keep a committed row in the copy (the most recent ROW_CACHE rows)."""
        if job is not None:
            self._rows[job.job_id] = job
            self._rows.move_to_end(job.job_id)
            if len(self._rows) > ROW_CACHE:
                self._rows.popitem(last=False)
        return job

    @staticmethod
    def _job(row: sqlite3.Row | None) -> Job | None:
        return Job(**{name: row[name] for name in _JOB_COLUMNS}) if row is not None else None
