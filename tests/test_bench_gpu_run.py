"""bench/gpu_run.sh's steps run on the CPU at a tiny size: the GPU run must hold no surprise but
the numbers (issue 16). bench/svd_gpu.py has its own smoke test (test_bench_svd.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
# 3 s at 4 fps: 12 frames, 3 passes of the tiny model; 360p keeps the camera path and x264 cheap.
SMALL = ["--duration", "3", "--resolution", "360p", "--fps", "4"]


def _run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        check=False,
    )


def test_gpu_run_script_parses() -> None:
    done = subprocess.run(
        ["bash", "-n", str(BENCH / "gpu_run.sh")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    text = (BENCH / "gpu_run.sh").read_text()
    for script in ("svd_gpu.py", "gpu_e2e.py", "gpu_oom.py"):
        assert f"bench/{script}" in text and (BENCH / script).is_file()
    assert "bench/svd_gpu.py --plan" in text and (BENCH / "svd_plan.py").is_file()
    # The end-to-end job runs first, and short.
    assert text.index("step e2e") < text.index("step svd") < text.index("step plan")
    assert "--duration 3 --steps 10" in text


def test_end_to_end_job_through_the_service(tmp_path: Path) -> None:
    """Random-weight model saved as an fp16 variant, `python -m fanslymotion` on it, one job
    over HTTP, progress and ETA recorded, the MP4 downloaded and probed."""
    out = tmp_path / "e2e.json"
    done = _run("gpu_e2e.py", "--tiny", *SMALL, "--steps", "2", "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["ok"] is True and results["device"] == "cpu"
    assert results["model"]["weight_files"] and all(
        ".fp16.safetensors" in name for name in results["model"]["weight_files"]
    )
    assert results["start"]["renderer"]["name"] == "svd"
    assert "fp16 weights" in results["start"]["renderer"]["reason"]
    assert results["final_status"]["status"] == "completed"
    assert results["probe"]["frames"] == 12
    assert (results["probe"]["width"], results["probe"]["height"]) == (640, 360)
    assert results["probe"]["fps"] == 4
    assert results["eta"]["samples_with_eta"] > 0
    assert results["service_exit"] == 0
    assert results["checks"]["not_flat"] is True  # the NaN guard: real pictures went through


def test_plan_benchmark_rehearsal(tmp_path: Path) -> None:
    """GPU-seconds per output second, old plan against new, eager and compiled (dynamo's eager
    backend here), by phase, with the SDPA back-ends that run."""
    out = tmp_path / "plan.json"
    done = _run(
        "svd_gpu.py",
        "--plan",
        "--tiny",
        "--threads",
        "1",
        "--duration",
        "3",
        "--resolution",
        "360p",
        "--modes",
        "eager,compiled",
        "--compile-backend",
        "eager",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["complete"] is True and results["sdpa"]["MATH"] == "runs"
    runs = results["runs"]
    assert set(runs) == {"baseline_eager", "plan_eager", "baseline_compiled", "plan_compiled"}
    for mode in ("eager", "compiled"):
        base, plan = runs[f"baseline_{mode}"], runs[f"plan_{mode}"]
        # 3 s: 36 frames generated at 12 fps (9 passes of the tiny model) against 72 frames at
        # 24 fps out of 19 generated (5 passes).
        assert (base["frames"], base["generated"], base["passes"]) == (36, 36, 9)
        assert (plan["frames"], plan["generated"], plan["passes"], plan["factor"]) == (72, 19, 5, 4)
        assert set(plan["phases_s"]) >= {"unet", "decode", "vae_encode", "clip"}
        assert plan["gpu_s"] > 0 and results[f"gain_{mode}"] > 0
    assert runs["plan_compiled"]["compiled"] is True


def test_oom_ladder_rehearsal(tmp_path: Path) -> None:
    """The ladder's five jobs, the OOMs injected where the GPU run's memory caps strike."""
    out = tmp_path / "oom.json"
    done = _run("gpu_oom.py", "--tiny", "--threads", "1", *SMALL, "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["ok"] is True and results["mode"] == "injected (CPU rehearsal)"
    rows = {row["name"]: row for row in results["scenarios"]}
    assert list(rows) == ["baseline", "half_chunk", "offload", "fail", "after"]
    assert [rows[name]["level"] for name in ("baseline", "half_chunk", "offload", "after")] == [
        0,
        1,
        2,
        0,
    ]
    assert rows["half_chunk"]["last_chunk"] == 3  # half the tiny model's 6-frame pass
    assert rows["fail"]["outcome"] == "GPUOutOfMemory" and not rows["fail"]["file_left"]
    assert rows["fail"]["message"].startswith("not enough GPU memory for 360p, 3 s")
    assert all(row["checks"]["no_hooks_left"] for row in rows.values())
