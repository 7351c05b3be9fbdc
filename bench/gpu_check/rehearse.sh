#!/usr/bin/env bash
# Rehearse the GPU check on CPU in a scratch venv that mimics the GPU machine's image: the image's
# transformers 5.17.0, huggingface_hub 1.33.0, accelerate 1.15.0 and tokenizers 0.23.2, peft and
# the libraries around them, but no trl, deepspeed, datasets, pydantic, ruamel.yaml or wandb.
# The wheels are built for that venv's Python, and run.py --cpu installs them through the same
# bootstrap the GPU machine uses (pip --target into a private folder, first on PYTHONPATH). What
# differs from the image: the CPU torch of this checkout (the image has torch 2.11 with CUDA) and
# this machine's Python (the image has 3.12).
#
#   bench/gpu_check/rehearse.sh                         # every stage; ~the --cpu time plus ~1 min
#   bench/gpu_check/rehearse.sh --only gpu1,mfu         # arguments go to run.py
#
# REHEARSAL_DIR (default /tmp/gpu_check_rehearsal) holds the venv, the wheels and the report.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${REHEARSAL_DIR:-/tmp/gpu_check_rehearsal}"
UV="$ROOT/.venv/bin/uv"
BASE_PY="$("$ROOT/.venv/bin/python" -c 'import sys; print(sys._base_executable)')"
TARGET_PY="$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
TORCH="$(grep -m1 '^torch==' "$ROOT/requirements.in")"
TORCH_WHEELS="${TORCH_WHEELS:-/opt/wheels}"
if ls "$TORCH_WHEELS"/torch-*.whl >/dev/null 2>&1; then
    TORCH_SOURCE=(--find-links "$TORCH_WHEELS")
else
    TORCH_SOURCE=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi

# The image's packages (as published 2026-11), resolved with their own dependencies. pip is
# seeded: the bootstrap installs the wheels with `python -m pip install --target`.
if [[ ! -x "$DIR/venv/bin/python" ]]; then
    "$UV" venv -q --seed --python "$BASE_PY" "$DIR/venv"
fi
"$UV" pip install -q --python "$DIR/venv/bin/python" "${TORCH_SOURCE[@]}" "$TORCH" \
    transformers==5.17.0 huggingface_hub==1.33.0 accelerate==1.15.0 tokenizers==0.23.2 safetensors==0.8.0 \
    peft numpy pandas pyarrow pyyaml jinja2 psutil ninja msgpack py-cpuinfo einops tqdm fsspec xxhash packaging
# typer (the Hub's and transformers' command line) pulls pydantic in here; the image has none of it.
"$UV" pip uninstall -q --python "$DIR/venv/bin/python" pydantic pydantic-core annotated-types typing-inspection \
    2>/dev/null || true
for absent in trl deepspeed datasets pydantic ruamel.yaml wandb; do
    if "$DIR/venv/bin/python" -c "import importlib, sys; importlib.import_module('$absent')" 2>/dev/null; then
        echo "error: $absent is importable in $DIR/venv; the image has none (remove $DIR and rerun)" >&2
        exit 1
    fi
done

echo "rehearse: venv like the image ready in ${SECONDS} s" >&2
TARGET_PY="$TARGET_PY" WHEELS="$DIR/wheels" "$ROOT/bench/gpu_check/build_wheels.sh" >/dev/null
echo "rehearse: wheels ready at ${SECONDS} s; run.py --cpu follows (its report has its own times)" >&2
cd "$ROOT"
exec env HF_HUB_OFFLINE=1 WANDB_MODE=offline "$DIR/venv/bin/python" bench/gpu_check/run.py --cpu \
    --wheels "$DIR/wheels" --out "$DIR/gpu_check.json" "$@"
