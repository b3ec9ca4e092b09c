#!/usr/bin/env bash
# The SVD path on a real GPU in one command (issues 16, 22, 27): correctness first, then speed.
#
#   bash bench/gpu_run.sh OUT            # on the lent GPU machine: one 9-minute command on an H100
#   bash bench/gpu_run.sh --rehearse OUT # here, on the CPU: the same steps at a tiny size
#
# Steps, each with its own time limit inside one overall budget (GPU_RUN_BUDGET seconds, 540 by
# default, so the device tool's 10-minute command has room to spare):
#   0. install the carried wheels (.whl/, from bench/gpu_wheels.sh) into $SITE, record the card,
#      the driver and the versions (torchvision and the image processor class included);
#   1. bench/gpu_e2e.py FIRST and short: random-weight SVD-XT saved as an fp16 variant,
#      `python -m fanslymotion` on it, a 3 s 720p job of 10 steps over HTTP (6 fps generated,
#      interpolated to 12), ETA against the real time, the MP4 probed, and the NaN guard: random
#      fp16 weights can overflow, so the frames' luma spread must be real (`not_flat`) and the
#      renderer refuses NaN latents;
#   2. bench/svd_gpu.py: seconds per 25-frame clip, plain diffusers (fp16, eager, decode chunk 8,
#      the image processor transformers picks: torchvision's where installed) against ours eager
#      and compiled, 1024x576, 25 steps;
#   3. bench/svd_plan.py (svd_gpu.py --plan): GPU-seconds per second of output for a 12 s clip,
#      the old plan (7 passes at 12 fps) against the new (4 passes at 6 fps, interpolated to 24),
#      eager and compiled, per phase (UNet, decode, encodes by CUDA events), SDPA back-ends;
#   4. bench/gpu_oom.py: the out-of-memory ladder on real CUDA OOMs (memory fraction caps).
# A step that fails or runs out of time does not stop the others; every step writes its JSON as
# it goes. OUT gets at most 10 files: summary.json, e2e.json, svd.json, plan.json, oom.json,
# their four logs and env.txt (nvidia-smi, pip, ffmpeg).
set -uo pipefail
cd "$(dirname "$0")/.."

rehearse=0
if [ "${1:-}" = "--rehearse" ]; then
    rehearse=1
    shift
fi
out=${1:?usage: bench/gpu_run.sh [--rehearse] OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
python=${PYTHON:-python3}
site=${SITE:-/tmp/site}
budget=${GPU_RUN_BUDGET:-540}
start=$(date +%s)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor-cache}
if [ "$rehearse" = 1 ]; then
    # Two shared cores here: no GPU, one thread each, no chance of a CUDA device being picked.
    export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi

left() { echo $((start + budget - $(date +%s))); }
note() { echo "[gpu_run $(($(date +%s) - start)) s] $*"; }

# 0. wheels and environment
if compgen -G ".whl/*.whl" >/dev/null; then
    note "installing $(ls .whl/*.whl | wc -l) carried wheels into $site"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl || { echo "wheel install failed" >&2; exit 2; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
else
    note "no .whl/: using the installed packages (run bench/gpu_wheels.sh first for the GPU machine)"
fi
{
    echo "== date"; date -u
    echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "(no nvidia-smi)"
    echo "== python"; command -v "$python"; "$python" --version
    echo "== ffmpeg on PATH"; command -v ffmpeg || echo "(none)"
    echo "== ffmpeg used"; "$python" -c "import imageio_ffmpeg as f; e = f.get_ffmpeg_exe(); print(e)" 2>&1
    echo "== image processor"; "$python" -c "
import importlib.util as u, transformers as t
print('torchvision', 'present' if u.find_spec('torchvision') else 'absent')
print(type(t.CLIPImageProcessor(crop_size=224, size=224)).__name__)" 2>&1
    echo "== pip list"; "$python" -m pip list 2>/dev/null
    echo "== nproc / memory"; nproc; free -g 2>/dev/null || true
} >"$out/env.txt" 2>&1
"$python" - "$out/summary.json" <<'EOF'
import importlib, json, platform, sys
import torch
env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
for name in ("diffusers", "transformers", "accelerate", "numpy", "pydantic", "aiohttp", "imageio_ffmpeg"):
    try:
        env[name] = importlib.import_module(name).__version__
    except Exception as exc:  # a missing package is what this record is for
        env[name] = f"missing: {type(exc).__name__}: {exc}"
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    env.update(card=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
try:
    import imageio_ffmpeg
    env["ffmpeg"] = imageio_ffmpeg.get_ffmpeg_exe()
except Exception as exc:
    env["ffmpeg"] = f"missing: {exc}"
json.dump({"env": env, "steps": {}}, open(sys.argv[1], "w"), indent=2)
print(json.dumps(env))
EOF

# step NAME LIMIT COMMAND...: run with a time limit, its output to OUT/NAME.log, its status in
# summary.json.
step() {
    local name=$1 limit=$2
    shift 2
    if [ "$limit" -lt 30 ]; then
        note "$name: skipped, only $limit s left"
        rc=skipped
    else
        note "$name: starting (limit $limit s): $*"
        local t0
        t0=$(date +%s)
        timeout --signal=TERM --kill-after=15 "$limit" "$@" >"$out/$name.log" 2>&1
        rc=$?
        note "$name: exit $rc after $(($(date +%s) - t0)) s$([ $rc = 124 ] && echo ' (time limit)')"
        tail -n 25 "$out/$name.log" | sed "s/^/  $name| /"
    fi
    "$python" - "$out/summary.json" "$name" "$rc" "$(($(date +%s) - start))" <<'EOF'
import json, sys
path, name, rc, t = sys.argv[1:]
summary = json.load(open(path))
summary["steps"][name] = {"rc": rc, "ended_at_s": int(t)}
json.dump(summary, open(path, "w"), indent=2)
EOF
}

if [ "$rehearse" = 1 ]; then
    e2e_args=(--tiny --duration 3 --steps 10 --resolution 360p --fps 12)
    svd_args=(--tiny --threads 1 --runs 1 --variants plain,eager,compiled --compile-backend eager)
    plan_args=(--tiny --threads 1 --duration 3 --resolution 360p --modes eager,compiled
               --compile-backend eager)
    oom_args=(--tiny --threads 1)
else
    e2e_args=(--device cuda --duration 3 --steps 10 --resolution 720p --fps 12)
    svd_args=(--runs 1 --variants plain,eager,compiled)
    plan_args=(--duration 12 --resolution 720p --modes eager,compiled)
    oom_args=(--device cuda)
fi

# Limits: e2e first (does the product work at all), then the per-clip numbers, then the plan's
# GPU-seconds; each later step gets what is left minus the others' floor.
t=$(left); limit=$((t - 400 < 150 ? t - 400 : 150))
step e2e $limit "$python" bench/gpu_e2e.py "${e2e_args[@]}" --limit $((limit - 20)) \
    --json "$out/e2e.json"
t=$(left); step svd $((t - 250 < 170 ? t - 250 : 170)) \
    "$python" bench/svd_gpu.py "${svd_args[@]}" --json "$out/svd.json"
t=$(left); step plan $((t - 50 < 220 ? t - 50 : 220)) \
    "$python" bench/svd_gpu.py --plan "${plan_args[@]}" --json "$out/plan.json"
t=$(left); step oom $((t - 10)) \
    "$python" bench/gpu_oom.py "${oom_args[@]}" --json "$out/oom.json"

note "done; results in $out"
"$python" - "$out" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = json.loads((out / "summary.json").read_text())
def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
svd, e2e, oom, plan = load("svd"), load("e2e"), load("oom"), load("plan")
head = {}
if svd:
    for key in ("plain", "ours_eager", "ours_compiled"):
        if key in svd:
            head[f"{key}_s"] = round(svd[key]["best_s"], 2)
            head[f"{key}_peak_gib"] = svd[key]["peak_gib"] and round(svd[key]["peak_gib"], 1)
    for key in ("speedup", "compile_gain", "target_met", "complete"):
        if key in svd:
            head[f"svd_{key}"] = svd[key]
    if "ours_compiled" in svd:
        head["compile_first_call_s"] = round(svd["ours_compiled"]["first_call_s"], 1)
if plan:
    for name, run in (plan.get("runs") or {}).items():
        head[f"plan_{name}_gpu_s_per_output_s"] = round(run["gpu_s_per_output_s"], 2)
        head[f"plan_{name}_passes"] = run["passes"]
    for key in ("gain_eager", "gain_compiled", "target_met_eager", "target_met_compiled", "complete"):
        if key in plan:
            head[f"plan_{key}"] = plan[key]
    head["sdpa"] = plan.get("sdpa")
if e2e:
    head["e2e_ok"] = e2e.get("ok")
    head["e2e_not_flat"] = (e2e.get("checks") or {}).get("not_flat")
    head["e2e_job_s"] = e2e.get("job_s")
    head["e2e_probe"] = e2e.get("probe") and {k: e2e["probe"][k] for k in ("frames", "width", "height", "fps")}
    head["e2e_eta_mean_abs_error_s"] = (e2e.get("eta") or {}).get("mean_abs_error_s")
    head["e2e_error"] = e2e.get("error")
if oom:
    head["oom_ok"] = oom.get("ok")
    head["oom_mode"] = oom.get("mode")
    head["oom"] = {s["name"]: f"{s['outcome']} L{s.get('level')}" for s in oom.get("scenarios", [])}
    head["oom_error"] = oom.get("error")
summary["headline"] = head
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=1))
EOF
