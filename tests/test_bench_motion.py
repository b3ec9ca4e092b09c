"""bench/motion.py's quick run works end to end and prints every case and target (CI smoke)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "motion.py"


def test_bench_motion_quick(tmp_path: Path) -> None:
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
    table = done.stdout
    for case in ("| ours |", "| zoompan |", "| zoompan8k |", "| floor |"):
        assert case in table
    for target in ("target wall <= 1.15x floor", "target jitter <= 0.01 px", "target RSS long"):
        assert target in table
    # zoompan's whole-pixel window is the jitter this engine exists to remove.
    ours = next(line for line in table.splitlines() if line.startswith("| ours |"))
    zoompan = next(line for line in table.splitlines() if line.startswith("| zoompan |"))
    rms = [float(row.split("|")[7].split("/")[0]) for row in (ours, zoompan)]
    assert rms[0] * 10 < rms[1]
