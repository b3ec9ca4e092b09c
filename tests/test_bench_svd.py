"""bench/svd_gpu.py runs end to end on the CPU at a tiny size (the GPU numbers need a GPU)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "svd_gpu.py"


def test_bench_runs_tiny_on_cpu(tmp_path: Path) -> None:
    """The whole benchmark, ours compiled as on a GPU but with dynamo's code-free "eager"
    backend (inductor would spend minutes compiling on two cores)."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    args = ["--tiny", "--threads", "1", "--runs", "1", "--compile", "--compile-backend", "eager"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "plain:" in done.stdout and "ours:" in done.stdout and "speed-up" in done.stdout
    results = json.loads(out.read_text())
    assert results["tiny"] is True and results["device"] == "cpu"
    assert results["size"] == "128x64" and results["frames"] == 6 and results["steps"] == 3
    for variant in ("plain", "ours"):
        assert results[variant]["best_s"] > 0
    assert results["ours"]["decode_chunk"] == 6  # the whole pass in one decode
    assert results["ours"]["compiled"] is True
    assert results["ours"]["graphs"] == 1  # the UNet traces whole and never recompiles
    assert results["speedup"] > 0
    # Same seed, same conditioning: on the CPU the two paths agree but for rounding (ours goes
    # through the colour-matching space and back, and has channels-last convolutions).
    for name in ("ours_vs_plain", "ours_vs_plain_whole_decode"):
        difference = results["difference"][name]
        assert difference["max_abs"] <= 1
        assert math.isinf(difference["psnr_db"]) or difference["psnr_db"] > 60
    # 6 frames a pass: the plain pipeline's chunks of 8 are the whole pass too.
    assert results["difference"]["plain_decode_8_vs_whole"]["max_abs"] == 0
