#!/usr/bin/env bash
# Fetch, into .whl/, the wheels bench/gpu_run.sh needs on the lent GPU machine beyond what its
# image holds (torch, transformers, accelerate, numpy, pillow, safetensors, huggingface_hub,
# aiohttp, prometheus-client are there; see /work/.library/device/KINDS.md). Versions are the
# ones this checkout's .venv runs (VENV_PYTHON=... names another interpreter to read them from).
# That machine cannot download anything, and a call carries at most 64 MiB: these are ~40 MB,
# 29 MB of it ffmpeg.
#
#   bench/gpu_wheels.sh            # wheels for the machine's Python (3.12)
#   bench/gpu_wheels.sh 3.11       # for another Python (to rehearse the run here)
#
# Then, through the device tool, with carry [".whl"] (docs/benchmarks.md has the exact call):
#   bash bench/gpu_run.sh $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${1:-3.12}
venv_python=${VENV_PYTHON:-.venv/bin/python}
[ -x "$venv_python" ] || { echo "run scripts/dev test first: the versions come from .venv" >&2; exit 2; }

# What the image lacks: diffusers and its importlib_metadata (with lazy-importer), pydantic(-settings)
# for our config, aiosqlite for the job store, and a typing-extensions recent enough for them.
names=(diffusers importlib_metadata lazy-importer typing-extensions pydantic pydantic_core
       pydantic-settings python-dotenv annotated-types typing-inspection aiosqlite)
pins=()
for name in "${names[@]}"; do
    version=$("$venv_python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    pins+=("$name==$version")
done
# ffmpeg for the end-to-end job's encode and probe: the image has none that we know of, and the
# wheel .venv runs (imageio-ffmpeg 0.8.1, ffmpeg 9, 68 MB) would not fit in a call. 0.6.0 is the
# last whose wheel is small (29.5 MB, a static ffmpeg 7.0.2 with libx264); video.py needs
# ffmpeg >= 5.1 (-fps_mode), and the Python side (get_ffmpeg_exe) is the same.
pins+=("imageio-ffmpeg==0.6.0")

rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${pins[@]}"
du -sh .whl
