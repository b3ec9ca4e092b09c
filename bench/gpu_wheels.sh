#!/usr/bin/env bash
# Fetch, into .whl/, the wheels bench/svd_gpu.py needs on the lent GPU machine beyond what its
# image holds (torch, transformers, accelerate, numpy, pillow, safetensors, huggingface_hub are
# there; see /work/.library/device/KINDS.md). Versions are the ones this checkout's .venv runs.
# That machine cannot download anything, and a call carries at most 64 MiB: these are ~9 MB.
#
#   bench/gpu_wheels.sh            # wheels for the machine's Python (3.12)
#   bench/gpu_wheels.sh 3.11       # for another Python (to rehearse the run here)
#
# Then, through the device tool, with carry [".whl"]:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 &&
#   python3 bench/svd_gpu.py --json $OUT/svd-h100.json
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${1:-3.12}
venv_python=.venv/bin/python
[ -x "$venv_python" ] || { echo "run scripts/dev test first: the versions come from .venv" >&2; exit 2; }

# What the image lacks: diffusers and its importlib_metadata (with lazy-importer), pydantic(-settings)
# for our config, and a typing-extensions recent enough for them.
names=(diffusers importlib_metadata lazy-importer typing-extensions pydantic pydantic_core
       pydantic-settings python-dotenv annotated-types typing-inspection)
pins=()
for name in "${names[@]}"; do
    version=$("$venv_python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    pins+=("$name==$version")
done

rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python_version" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${pins[@]}"
du -sh .whl
