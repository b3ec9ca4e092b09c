"""bench/story.py's quick run works end to end and prints its runs and target (CI smoke)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "story.py"


def test_bench_story_quick(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    for run in ("| floor |", "| compose |", "| story |"):
        assert run in table
    assert "target story <= 1.3x floor" in table
    assert "LUFS" in table and "compositor peak" in table
