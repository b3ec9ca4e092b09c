"""Benchmark of the operator's figures (issue 26): the queries behind `GET /admin/stats` (24 h
and 30 days), `GET /admin/users` and the daily-limit check at create, on a SQLite database of
10,000 jobs spread over 30 days (statuses, resolutions, owners of both sources, as a busy
month leaves them). Target: each answer in under 100 ms.

The store is the service's own (`Store.open`, its migrations and indexes); the rows are
written with plain SQL first, then each query runs `--runs` times after one warm-up run.

    python bench/admin_stats.py              # 10,000 jobs, 30 runs of each query
    python bench/admin_stats.py --quick      # smoke run for CI: the same, 5 runs
    python bench/admin_stats.py --jobs 50000 --json results.json
    python bench/admin_stats.py --postgres   # the same on a cluster front's PostgreSQL (a
                                             # throwaway server of its own, tests/pg_server.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fanslymotion import stats  # noqa: E402
from fanslymotion.limits import day_start  # noqa: E402
from fanslymotion.store import Store, iso_utc  # noqa: E402

TARGET_MS = 100.0
RESOLUTIONS = ("360p", "480p", "720p", "1080p")
DURATIONS = (3, 6, 8, 10, 12)


def make_rows(jobs: int, now: datetime, seed: int = 26) -> list[tuple[Any, ...]]:
    """`jobs` rows over the last 30 days: most completed, some failed or cancelled, a few
    waiting; 300 API users and 300 Telegram users, a handful of them heavy."""
    rng = random.Random(seed)
    rows = []
    for index in range(jobs):
        made = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        source = "telegram" if rng.random() < 0.6 else "api"
        user = rng.choice((1, 2, 3)) if rng.random() < 0.2 else rng.randrange(10, 310)
        status = rng.choices(("completed", "failed", "cancelled", "queued"), weights=(85, 8, 5, 2))[
            0
        ]
        started = made + timedelta(seconds=rng.expovariate(1 / 20))
        render = rng.uniform(2, 60)
        ended = started + timedelta(seconds=render)
        done = status in ("completed", "failed", "cancelled")
        rows.append(
            (
                f"bench-{index:06d}",
                user,
                source,
                rng.choice(DURATIONS),
                rng.choice(RESOLUTIONS),
                status,
                iso_utc(made),
                iso_utc(started) if status != "queued" else None,
                iso_utc(ended) if done else None,
                render if status == "completed" else None,
                "internal render error" if status == "failed" else None,
            )
        )
    return rows


def fill(path: Path, jobs: int, now: datetime) -> None:
    rows = make_rows(jobs, now)
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO jobs (job_id, user_id, source, duration, resolution, status,"
            " created_at, started_at, completed_at, render_seconds, error, motion_preset,"
            " aspect, strength, seed, steps, fps, updated_at, renderer, frames)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pan_l', 'auto', 0.5, 1, 25, 24,"
            " ?7, 'motion', ?4 * 24)",
            rows,
        )
        db.executemany(
            "INSERT INTO owner_limits (source, user_id, daily_seconds, blocked, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [("api", n, 600, 0, iso_utc(now)) for n in range(1, 40)],
        )


async def measure(work: Callable[[], Awaitable[Any]], runs: int) -> dict[str, float]:
    await work()  # warm-up: SQLite's page cache, Python's first calls
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 2),
        "max_ms": round(times[-1], 2),
    }


def _queries(store: Any, now: datetime) -> dict[str, Callable[[], Awaitable[Any]]]:
    today = day_start(now)
    month = today - timedelta(days=29)
    return {
        "stats 24h": lambda: stats.figures(store, "24h", now),
        "stats 30d": lambda: stats.figures(store, "30d", now),
        "stats today (bot /stats)": lambda: stats.figures(store, "today", now),
        "users (30 days)": lambda: store.owners(iso_utc(today), iso_utc(month)),
        "daily-limit check": lambda: store.ordered_seconds("api", 1, iso_utc(today)),
    }


async def run_postgres(jobs: int, runs: int) -> tuple[dict[str, Any], int, str]:
    """The same queries through `cluster.owners.PgOwners` on a throwaway PostgreSQL."""
    from fanslymotion.cluster.db import ClusterDB
    from fanslymotion.cluster.owners import PgOwners
    from tests.pg_server import PostgresServer

    now = datetime.now(UTC)
    server = PostgresServer()
    server.start()
    try:
        db = await ClusterDB.open(server.new_database("admin_stats"))
        try:
            await db.migrate()
            rows = make_rows(jobs, now)
            async with db.transaction() as conn, conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO fm_jobs (job_id, user_id, source, duration, resolution, status,"
                    " created_at, started_at, completed_at, render_seconds, error, motion_preset,"
                    " aspect, strength, seed, steps, fps, updated_at, renderer, frames)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pan_l', 'auto', 0.5,"
                    " 1, 25, 24, %s, 'motion', %s)",
                    [(*row, row[6], row[3] * 24) for row in rows],
                )
                await cur.executemany(
                    "INSERT INTO fm_owner_limits (source, user_id, daily_seconds, blocked,"
                    " updated_at) VALUES ('api', %s, 600, 0, %s)",
                    [(n, iso_utc(now)) for n in range(1, 40)],
                )
                await cur.execute("ANALYZE fm_jobs")
            owners = PgOwners(db)
            results = {
                name: await measure(work, runs) for name, work in _queries(owners, now).items()
            }
            month_jobs = (await stats.figures(owners, "30d", now))["jobs"]
            row = await db.one("SHOW server_version")
            version = str(row["server_version"]) if row else "?"
        finally:
            await db.close()
        return results, month_jobs, version
    finally:
        server.stop()


async def run(jobs: int, runs: int, postgres: bool = False) -> dict[str, Any]:
    if postgres:
        results, month_jobs, version = await run_postgres(jobs, runs)
        return _summary(jobs, runs, results, month_jobs, f"PostgreSQL {version}")
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.sqlite3"
        store = await Store.open(path)  # the schema, its migrations and indexes
        await store.close()
        fill(path, jobs, now)
        store = await Store.open(path)
        try:
            queries = _queries(store, now)
            results = {name: await measure(work, runs) for name, work in queries.items()}
            month_jobs = (await stats.figures(store, "30d", now))["jobs"]
        finally:
            await store.close()
    return _summary(jobs, runs, results, month_jobs, f"sqlite {sqlite3.sqlite_version}")


def _summary(
    jobs: int, runs: int, results: dict[str, Any], month_jobs: int, database: str
) -> dict[str, Any]:
    return {
        "jobs": jobs,
        "runs": runs,
        "target_ms": TARGET_MS,
        "machine": f"{platform.machine()} {platform.python_version()} {database}",
        "queries": results,
        "jobs_in_30d_window": month_jobs,
        "ok": all(r["max_ms"] < TARGET_MS for r in results.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="5 runs of each query")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--postgres", action="store_true", help="a cluster front's PostgreSQL")
    args = parser.parse_args()
    result = asyncio.run(run(args.jobs, 5 if args.quick else args.runs, args.postgres))
    print(f"{result['jobs']} jobs, {result['runs']} runs each, {result['machine']}")
    print(f"{'query':<28} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
    for name, row in result["queries"].items():
        print(f"{name:<28} {row['median_ms']:>10.2f} {row['p95_ms']:>8.2f} {row['max_ms']:>8.2f}")
    print(f"target: every answer under {TARGET_MS:.0f} ms: {'met' if result['ok'] else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
