"""Smoke run of bench/cluster.py --quick on the session's PostgreSQL: every section runs, every
status window answers, the tables print.

Only that the bench works is checked here; its numbers depend on the machine and on whatever
else runs on it, so they are read in docs/benchmarks.md, not judged in CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from .pg_server import PostgresServer

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(180)


def test_bench_cluster_quick(tmp_path: Path, postgres: PostgresServer) -> None:
    results = tmp_path / "cluster.json"
    started = time.monotonic()
    command = [sys.executable, str(ROOT / "bench" / "cluster.py"), "--quick"]
    command += ["--json", str(results), "--postgres", postgres.database_url("postgres")]
    # Its own process group: on a timeout the bench's children (front, workers, load client)
    # go down with it.
    bench = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        table, errors = bench.communicate(timeout=150)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.communicate()
    elapsed = time.monotonic() - started
    assert bench.returncode == 0, errors[-3000:]
    for row in (
        "| single box (baseline): job row created -> | 3 |",
        "| cluster, 2 workers: job row created -> | 3 |",
        "| cluster, 2 workers: enqueue committed (its NOTIFY) -> | 3 |",
        "Dispatch ratio cluster/single box",
        "| cluster, 1 worker | 4/4 |",
        "| cluster, 2 workers | 4/4 |",
        "| cluster, 4 workers | 4/4 |",
        "more workers than cores",
        "| single box (baseline) | running |",
        "| cluster, 1 worker | waiting |",
        "Status rate ratio cluster/single box: running",
        "| procrastinate_fetch_job_v2 |",
        "| ClusterDB.start (with its rerank) |",
        "| ClusterDB.rerank alone |",
        "| PgStore.create_job (with its rerank) |",
        "| ClusterDB.fair_order (all waiting rows) |",
        "Capacity at 1,000 queued",
    ):
        assert row in table, table
    data = json.loads(results.read_text())
    assert all(data["rendering"].values()), table
    assert all(run["completed"] == run["jobs"] for run in data["throughput"].values())
    for loads in data["status"].values():
        for load in loads.values():
            assert load["requests"] > 0 and load["errors"] == 0, loads
    for size in ("100", "1000"):
        assert all(len(values) == 15 for values in data["takes"][size].values())
    assert "Traceback" not in errors, errors[-3000:]
    # The bench dropped the databases it made on the shared server.
    with psycopg.connect(postgres.database_url("postgres"), autocommit=True) as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert not [name for name in names if name.startswith("bench")], names
    print(f"bench/cluster.py --quick took {elapsed:.1f} s")
