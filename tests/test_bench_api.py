"""Smoke run of bench/api.py --quick: both setups run, every window answers, the tables print.

Only that the bench works is checked here; its numbers depend on the machine (and on whatever
else runs on it), so the targets are judged in docs/benchmarks.md, not in CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_api_quick(tmp_path: Path) -> None:
    results = tmp_path / "api.json"
    started = time.monotonic()
    # Its own process group: on a timeout the bench's children (the service, the bare server,
    # the load client) go down with it.
    bench = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "api.py"), "--quick", "--json", str(results)],
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
        "| in-process | bare aiohttp handler, saturated |",
        "| in-process | /job/status (running job), saturated |",
        "| process | /job/status (queued job, 2nd), saturated |",
        "| process | /job/status (running job), paced 5/s per client |",
        "| status rate >= 60 % of bare (saturated) |",
        "| loop lag p99 <= 10 ms during a render |",
        "| submit -> start <= 50 ms (median) |",
    ):
        assert row in table, table
    assert "warning" not in table, table
    sections = json.loads(results.read_text())
    assert [s["setup"] for s in sections] == ["in-process", "process"]
    for section in sections:
        assert section["render_running"] is True
        assert len(section["start_ms"]) == 3 and all(v > 0 for v in section["start_ms"])
        assert len(section["loads"]) == 6  # running, queued, completed, paced, and bare twice
        for load in section["loads"].values():
            assert load["requests"] > 0 and load["errors"] == 0, section
    assert sections[0]["lag_ms"]["render"]["samples"] > 0
    assert "Traceback" not in errors, errors[-3000:]
    print(f"bench/api.py --quick took {elapsed:.1f} s")
