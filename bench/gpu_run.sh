#!/usr/bin/env bash
# The SVD path on a real GPU in one command (issue 16): speed, memory and correctness on CUDA.
#
#   bash bench/gpu_run.sh OUT            # on the lent GPU machine, under 9 minutes on an H200
#   bash bench/gpu_run.sh --rehearse OUT # here, on the CPU: the same steps at a tiny size
#
# Steps, each with its own time limit inside one overall budget (GPU_RUN_BUDGET seconds, 540 by
# default, so the device tool's 10-minute command has room to spare):
#   0. install the carried wheels (.whl/, from bench/gpu_wheels.sh) into $SITE, record the card,
#      the driver and the versions;
#   1. bench/svd_gpu.py: plain diffusers (fp16, eager, decode chunk 8) against ours eager and ours
#      compiled, 1024x576, 25 frames, 25 steps;
#   2. bench/gpu_e2e.py: random-weight SVD-XT saved as an fp16 variant, `python -m fanslymotion`
#      on it, a 6 s 720p job over HTTP, ETA against the real time, the MP4 probed;
#   3. bench/gpu_oom.py: the out-of-memory ladder on real CUDA OOMs (memory fraction caps).
# A step that fails or runs out of time does not stop the others. OUT gets at most 8 files (what
# the device tool brings back): summary.json, svd.json, e2e.json, oom.json and the three logs,
# and env.txt (nvidia-smi, pip, ffmpeg).
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
    svd_args=(--tiny --threads 1 --runs 1 --variants plain,eager,compiled --compile-backend eager)
    e2e_args=(--tiny)
    oom_args=(--tiny --threads 1)
else
    svd_args=(--runs 2 --variants plain,eager,compiled)
    e2e_args=(--device cuda)
    oom_args=(--device cuda)
fi

# Limits: svd first (the numbers that set the defaults), leaving e2e and oom their share; every
# later step gets what is left. svd writes its JSON after each variant, so a compile that runs
# out of time still leaves plain and ours eager.
t=$(left); step svd $((t - 230 < 330 ? t - 230 : 330)) \
    "$python" bench/svd_gpu.py "${svd_args[@]}" --json "$out/svd.json"
# e2e gets its own deadline 20 s inside the step's, so it can stop the service and say why.
t=$(left); limit=$((t - 100 < 200 ? t - 100 : 200))
step e2e $limit "$python" bench/gpu_e2e.py "${e2e_args[@]}" --limit $((limit - 20)) \
    --json "$out/e2e.json"
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
svd, e2e, oom = load("svd"), load("e2e"), load("oom")
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
if e2e:
    head["e2e_ok"] = e2e.get("ok")
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
