#!/usr/bin/env bash
# Fill .carry/wheels/ with the wheels bench/gpu_check/run.py installs on the GPU machine, whose
# image lacks trl, deepspeed, datasets, pydantic and ruamel.yaml (see requirements.txt there).
# The versions are requirements.lock's, as `run.py --pins` resolves them (with requirements.txt's
# documented exceptions). That machine cannot reach a package index, and its Python is 3.12 on
# x86-64 Linux, so the wheels are fetched here for that target with --no-deps (each dependency
# is named in requirements.txt, exactly once). DeepSpeed ships only as a source archive: it is built here as
# a pure-Python wheel (DS_BUILD_OPS=0, no CUDA ops compiled; it JIT-builds what it needs there),
# against this venv's torch (--no-build-isolation, so pip never fetches a torch to build with).
#
#   bench/gpu_check/build_wheels.sh            # from the repository root
#   TARGET_PY=3.11 WHEELS=/tmp/w bench/gpu_check/build_wheels.sh   # for another Python (rehearsal)
#
# The folder is ignored through .git/info/exclude and travels with `carry: [".carry/wheels"]`;
# the whole working tree that travels must stay under 64 MiB, so the script prints the total.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${WHEELS:-$ROOT/.carry/wheels}"
TARGET_PY="${TARGET_PY:-3.12}"
ABI="cp${TARGET_PY/./}"

mkdir -p "$OUT"
if [[ "$OUT" == "$ROOT/.carry/"* ]]; then
    # git rev-parse: in a worktree .git is a file, and the exclude file lives in the main repository
    EXCLUDE="$(git -C "$ROOT" rev-parse --git-path info/exclude)"
    mkdir -p "$(dirname "$EXCLUDE")"
    grep -qxF "/.carry/" "$EXCLUDE" 2>/dev/null || echo "/.carry/" >>"$EXCLUDE"
fi

PINS_TEXT="$("$PYTHON" "$ROOT/bench/gpu_check/run.py" --pins)"  # fails loudly on a pin the lock lacks
mapfile -t PINS <<<"$PINS_TEXT"
for pin in "${PINS[@]}"; do
    name="${pin%%==*}"
    if [[ "$name" == "deepspeed" ]]; then
        if ! ls "$OUT"/deepspeed-*.whl >/dev/null 2>&1; then
            DS_BUILD_OPS=0 "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation "$pin" -w "$OUT"
        fi
        continue
    fi
    # Pure-Python wheels match any target; pydantic-core is the one compiled wheel (cp312, manylinux).
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
        --python-version "$TARGET_PY" --implementation cp --abi "$ABI" --abi abi3 --abi none \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$OUT" "$pin"
done

# One wheel per requirement, nothing stale from an earlier pin (two versions stop the install).
count=$(ls "$OUT"/*.whl | wc -l)
if [[ "$count" -ne "${#PINS[@]}" ]]; then
    echo "error: $count wheels in $OUT for ${#PINS[@]} requirements; remove the stale ones:" >&2
    ls "$OUT" >&2
    exit 1
fi
ls -l "$OUT"
du -cb "$OUT"/*.whl | tail -1 | awk '{printf "total %.1f MiB in %s wheels\n", $1 / 1048576, '"$count"'}'
