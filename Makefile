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

.PHONY: venv lint test test-fast demo bench clean

venv: $(STAMP)

# Reinstall only when the package metadata changes. torch: keep an importable one,
# else the pinned CPU wheel (never let pip resolve a multi-GB CUDA build).
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,experiment,dev,qlora]"
	@# deepspeed (tests check our ZeRO files with its own parser) ships only as source: build it
	@# against the installed torch, never in an isolated env that would fetch another torch.
	@$(PY) -c "import deepspeed" 2>/dev/null || DS_BUILD_OPS=0 $(PY) -m pip install -q --no-build-isolation "deepspeed>=0.14.4" hjson ninja py-cpuinfo msgpack einops
	@touch $(STAMP)

# Style is part of the suite: a lint or format error fails `make test` (and so CI).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The 15 slowest tests are listed at the end: the suite must stay under 15 minutes on 2 cores.
test: venv lint
	$(PY) -m pytest -q --durations=15

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
