"""Smoke run of bench/admin_stats.py --quick: 10,000 jobs written, every figure answers, the
table prints. The 100 ms target is judged in docs/benchmarks.md (timings depend on the machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_admin_stats_quick(tmp_path: Path) -> None:
    results = tmp_path / "admin.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "admin_stats.py"), "--quick", "--json", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    body = json.loads(results.read_text())
    assert body["jobs"] == 10_000 and body["runs"] == 5
    assert set(body["queries"]) == {
        "stats 24h",
        "stats 30d",
        "stats today (bot /stats)",
        "users (30 days)",
        "daily-limit check",
    }
    # Nearly all of the month's jobs fall in the 30-day window (its first day starts at midnight).
    assert 9_000 < body["jobs_in_30d_window"] <= 10_000
    assert "stats 30d" in done.stdout and "target: every answer under 100 ms" in done.stdout
