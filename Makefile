# make test / make demo create or refresh .venv themselves (idempotent, quick when nothing changed).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.grpolab-installed
export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false
# OpenMP threads spin-wait by default: on a busy 2-core machine a 2-thread torch step then runs
# 20x slower. A short spin keeps idle speed and removes the collapse (measured in the demo build).
export GOMP_SPINCOUNT ?= 1000

.PHONY: venv lock upgrade lint test test-fast demo bench clean

# requirements.lock is the exact set every machine gets (CI included); requirements.in and
# pyproject.toml's extras are what it is resolved from. uv installs it; pip only bootstraps uv.
UV_VERSION := 0.13.9
UV    := $(VENV)/bin/uv
LOCK  := requirements.lock
EXTRAS := --extra train --extra experiment --extra dev --extra qlora
TORCH := $(shell grep -m1 '^torch==' requirements.in)
# The CPU torch wheel: from a folder of wheels where the machine keeps one, else PyTorch's CPU
# index (PyPI's Linux torch is a multi-GB CUDA build).
TORCH_WHEELS ?= /opt/wheels
TORCH_SOURCE = $(if $(wildcard $(TORCH_WHEELS)/torch-*.whl),--find-links $(TORCH_WHEELS),--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
# DeepSpeed builds against the venv's torch, never in an isolated env that would fetch another.
UV_BUILD := --no-build-isolation-package deepspeed

# The venv is synced to the lock on every call: a venv that drifted from it (a hand `pip install
# -U`, a package left by an older lock) is put back exactly. Kept besides the lock: the torch that
# was there (with a CUDA build's own nvidia/triton packages), pip, uv and grpolab itself. When
# nothing differs uv answers in a fraction of a second. Builds use the venv (it has the lock's
# setuptools and torch): DeepSpeed must build against that torch.
venv: $(STAMP)
	@$(UV) pip freeze --python $(PY) | grep -iE '^(torch|triton|nvidia-[a-z0-9-]+|pip|uv)==' > $(VENV)/keep.txt
	@echo "-e $(CURDIR)" >> $(VENV)/keep.txt
	@$(UV) pip sync -q --python $(PY) --no-build-isolation $(LOCK) $(VENV)/keep.txt

$(UV):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q uv==$(UV_VERSION)

# A torch that already imports is kept (a GPU machine's CUDA build); the lock pins the rest.
# --no-deps: the lock already holds torch's own dependencies.
$(STAMP): pyproject.toml $(LOCK) requirements.in Makefile | $(UV)
	@$(PY) -c "import torch" 2>/dev/null || $(UV) pip install -q --python $(PY) --no-deps $(TORCH_SOURCE) "$(TORCH)"
	$(UV) pip install -q --python $(PY) --no-deps $(UV_BUILD) -r $(LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@# The spec's `from configs.grpo_config import GRPOConfigLoader` works in a script anywhere, not
	@# only from the checkout's root: the venv's Python finds the checkout's configs/ package.
	@$(PY) -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'grpolab_checkout.pth').write_text('$(CURDIR)\\n')"
	@touch $(STAMP)

# Re-resolve after a change to pyproject.toml or requirements.in, keeping every pin that still fits.
lock: | $(UV)
	@$(PY) -c "import torch" 2>/dev/null || $(UV) pip install -q --python $(PY) --no-deps $(TORCH_SOURCE) "$(TORCH)"
	$(UV) pip compile -q $(UPGRADE) pyproject.toml requirements.in $(EXTRAS) $(TORCH_SOURCE) $(UV_BUILD) \
		--python $(PY) --no-emit-package torch --no-header --annotation-style line -o $(LOCK)

# Move to the newest releases the ranges allow: re-resolve, install, regenerate the TRL field
# snapshot, then run the suite, which says what changed (review `git diff`).
upgrade: | $(UV)
	$(MAKE) lock UPGRADE=--upgrade
	$(MAKE) venv
	$(PY) -m grpolab.config.trl_snapshot
	$(MAKE) test

# Style is part of the suite: a lint or format error fails `make test` (and so CI).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The 15 slowest tests are listed at the end: the suite must stay under 15 minutes on 2 cores.
test: venv lint
	$(PY) -m pytest -q -n auto --dist loadscope --durations=15

# Everything but the slow end-to-end runs.
test-fast: venv lint
	$(PY) -m pytest -q -m "not slow"

demo: venv
	$(PY) training/grpo_training.py --config configs/grpo_demo.yaml

# All benchmarks, one after the other (~15 min on 2 cores): table on stdout and in
# bench/results/summary.md, JSON and PNG files in bench/results/.
bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
