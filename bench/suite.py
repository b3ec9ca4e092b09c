"""The test suite against a baseline commit, like for like (issue 20: no slower than at c354221).

Collects the baseline's tests and today's, keeps the baseline's tests whose ids still exist
(exactly, or with a parameter added, as a test that now runs on both deployments), and times
back to back the baseline's command on them (pytest in one process, as `scripts/dev test` was
then) and today's two phases (`scripts/dev test`) on the tests that stand for them. Each round
alternates which side runs first. About 16 minutes a round on two cores; it needs the machine
to itself. The baseline runs from a git worktree with this checkout's .venv.

    .venv/bin/python bench/suite.py [--base c354221] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Runs pytest on the ids listed in a file (too many for a command line).
RUN_IDS = (
    "import sys, pytest; ids = open(sys.argv[1]).read().split('\\n');"
    " sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', *sys.argv[2:], *filter(None, ids)]))"
)


def collect(root: Path) -> list[str]:
    """The test ids pytest collects in `root`."""
    command = [PYTHON, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        command, cwd=root, env=_env(root), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:  # an empty list would time nothing and print a ratio of it
        raise SystemExit(f"pytest could not collect the tests in {root}:\n{done.stdout[-2000:]}")
    return [line.strip() for line in done.stdout.splitlines() if "::" in line]


def stand_for(base: Sequence[str], now: Sequence[str]) -> tuple[list[str], list[str]]:
    """The baseline's ids that still exist, and today's ids that stand for them."""
    current = set(now)
    kept: list[str] = []
    chosen: dict[str, None] = {}
    for test in base:
        matches = [test] if test in current else [n for n in now if n.startswith(test + "[")]
        if matches:
            kept.append(test)
            chosen.update(dict.fromkeys(matches))
    return kept, list(chosen)


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root)}


def timed_pytest(root: Path, ids_file: Path, *args: str) -> tuple[float, int]:
    """Seconds and exit status of pytest on the ids in `ids_file`, run in `root`."""
    started = time.monotonic()
    result = subprocess.run(
        [PYTHON, "-c", RUN_IDS, str(ids_file), *args],
        cwd=root,
        env=_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.monotonic() - started, result.returncode


def run_base(root: Path, ids_file: Path) -> float:
    seconds, code = timed_pytest(root, ids_file)
    print(f"  baseline, one process: {seconds:.0f} s (exit {code})", flush=True)
    return seconds


def run_now(ids_file: Path) -> float:
    first, code1 = timed_pytest(ROOT, ids_file, "-n", "2", "--dist", "loadfile", "-m", "not serial")
    second, code2 = timed_pytest(ROOT, ids_file, "-m", "serial")
    print(
        f"  today, two phases: {first:.0f} + {second:.0f} = {first + second:.0f} s"
        f" (exit {code1}, {code2})",
        flush=True,
    )
    return first + second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="c354221", help="the baseline commit")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base_root = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base_root), args.base],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            kept, chosen = stand_for(collect(base_root), collect(ROOT))
            base_ids, now_ids = Path(tmp) / "base.txt", Path(tmp) / "now.txt"
            base_ids.write_text("\n".join(kept))
            now_ids.write_text("\n".join(chosen))
            print(f"{len(kept)} baseline tests still exist; {len(chosen)} tests stand for them")
            ratios = []
            for number in range(args.rounds):
                print(f"round {number + 1}:", flush=True)
                if number % 2 == 0:
                    base, now = run_base(base_root, base_ids), run_now(now_ids)
                else:
                    now, base = run_now(now_ids), run_base(base_root, base_ids)
                ratios.append(now / base)
            if ratios:
                print("today / baseline: " + ", ".join(f"{r:.2f}x" for r in ratios))
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base_root)], cwd=ROOT, check=False
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
