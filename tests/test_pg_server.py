"""The tests' PostgreSQL server (tests/pg_server.py): it answers, notifies, survives a restart,
gives independent databases, and takes procrastinate's schema."""

from __future__ import annotations

import asyncio

import procrastinate
import psycopg
import pytest

from .pg_server import PostgresServer


async def _one(url: str, query: str) -> object:
    """The first column of the first row of `query`, on a connection of its own."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(query)
        row = await cursor.fetchone()
        assert row is not None
        return row[0]


async def test_the_server_answers_on_loopback(postgres: PostgresServer) -> None:
    assert postgres.url == f"postgresql://postgres@127.0.0.1:{postgres.port}/fanslymotion"
    assert await _one(postgres.url, "SELECT 1") == 1
    assert await _one(postgres.url, "SELECT current_database()") == "fanslymotion"
    # The throwaway settings are in force.
    assert await _one(postgres.url, "SHOW fsync") == "off"
    assert await _one(postgres.url, "SHOW max_connections") == "200"
    assert "ready to accept connections" in postgres.log()


async def test_listen_notify_round_trip(pg_url: str) -> None:
    async with (
        await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as sender,
    ):
        await listener.execute("LISTEN fm_jobs")
        await sender.execute("SELECT pg_notify('fm_jobs', 'job 42')")
        got = [(n.channel, n.payload) async for n in listener.notifies(timeout=10, stop_after=1)]
    assert got == [("fm_jobs", "job 42")]


async def test_restart_drops_open_connections(postgres: PostgresServer, pg_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        await conn.execute("SELECT 1")
        logged = len(postgres.log())
        await asyncio.to_thread(postgres.restart)
        with pytest.raises(psycopg.OperationalError):
            await conn.execute("SELECT 1")
        assert conn.broken
    assert await _one(pg_url, "SELECT 1") == 1
    assert "ready to accept connections" in postgres.log()[logged:]


async def test_new_databases_are_independent(postgres: PostgresServer) -> None:
    first = postgres.new_database("independent_a")
    second = postgres.new_database("independent_b")
    assert first != second
    async with await psycopg.AsyncConnection.connect(first, autocommit=True) as conn:
        await conn.execute("CREATE TABLE marks (n int)")
        await conn.execute("INSERT INTO marks VALUES (7)")
    assert await _one(first, "SELECT n FROM marks") == 7
    assert await _one(second, "SELECT to_regclass('marks') IS NULL") is True
    assert await _one(second, "SELECT current_database()") == "independent_b"
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        postgres.new_database("independent_a")


async def test_procrastinate_schema_applies(pg_url: str) -> None:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=pg_url))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    assert await _one(pg_url, "SELECT to_regclass('procrastinate_jobs') IS NOT NULL") is True
