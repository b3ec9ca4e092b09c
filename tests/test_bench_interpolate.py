"""bench/interpolate.py's quick run works end to end, and the interpolation beats its baselines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "interpolate.py"


def test_bench_interpolate_quick(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| astronaut |")]
    assert len(rows) == 2
    for row in rows:
        made, blended, repeated = (float(cell) for cell in row.split("|")[4:7])
        assert made > blended + 3 and made > repeated + 3, row
