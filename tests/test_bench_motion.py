"""bench/motion.py's quick run works end to end and prints every case and target (CI smoke)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "motion.py"


def bench(cwd: Path, *args: str, timeout: int) -> str:
    """The bench's output, run with `args` (it must succeed)."""
    done = subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_motion_quick(tmp_path: Path) -> None:
    table = bench(tmp_path, "--quick", timeout=120)
    for case in ("| ours |", "| zoompan |", "| zoompan8k |", "| floor |"):
        assert case in table
    for target in ("target wall <= 1.15x floor", "target jitter <= 0.01 px", "target RSS long"):
        assert target in table
    # zoompan's whole-pixel window is the jitter this engine exists to remove.
    ours = next(line for line in table.splitlines() if line.startswith("| ours |"))
    zoompan = next(line for line in table.splitlines() if line.startswith("| zoompan |"))
    rms = [float(row.split("|")[7].split("/")[0]) for row in (ours, zoompan)]
    assert rms[0] * 10 < rms[1]


def _worktrees(root: Path) -> str:
    listed = subprocess.run(["git", "worktree", "list"], cwd=root, capture_output=True, text=True)
    return listed.stdout


def test_bench_motion_times_a_baseline_commit_beside_ours(tmp_path: Path) -> None:
    """`--speed --base COMMIT`: ours at that commit, from a git worktree, alternates with ours
    and the floor, and its ratios are printed; the worktree is gone afterwards."""
    root = BENCH.parents[1]
    before = _worktrees(root)
    out = bench(tmp_path, "--quick", "--speed", "--repeat", "1", "--base", "HEAD", timeout=300)
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert rows[-3:] == ["ours", "floor", "ours at HEAD"]
    assert re.search(
        r"at HEAD: [\d.]+x the floor \(CPU [\d.]+x\); ours now / then: wall [\d.]+x", out
    ), out
    assert _worktrees(root) == before
