"""Shared by the benchmarks: run a child process and read its peak memory, build local random-init
models, describe the machine, write results. No benchmark logic lives here."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PYTHON = sys.executable


def child_env(**extra) -> dict:
    """The environment every timed child gets: offline, no telemetry, the Makefile's OpenMP setting."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        WANDB_MODE="offline",
        TOKENIZERS_PARALLELISM="false",
        GOMP_SPINCOUNT=env.get("GOMP_SPINCOUNT", "1000"),
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_child(cmd: list[str], *, cwd: Path = REPO, env: dict | None = None, log: Path | None = None) -> dict:
    """Run `cmd` to the end; wall seconds, peak RSS (MiB, this child alone, from wait4) and its output.
    A failed child stops the benchmark with its output's tail."""
    start = time.perf_counter()
    out = open(log, "w") if log else subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or child_env(), stdout=out, stderr=subprocess.STDOUT, text=True)
    text = proc.stdout.read() if log is None else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if log:
        out.close()
        text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{text[-3000:]}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "output": text}  # ru_maxrss is KiB on Linux


def grpolab_train(
    config: Path, overrides: list[str], out: Path, *, completion_length: int | None = None
) -> tuple[dict, Path, list[dict], dict]:
    """`grpolab train --config CONFIG --set ...` as a fresh process, its runs going to `out`:
    (the child's wall/peak RSS/output, its run directory, metrics.jsonl records, run_info.json).
    With `completion_length`, every logged step must have completions of exactly that length."""
    cmd = [PYTHON, "-m", "grpolab.cli.main", "train", "--config", str(config)]
    for item in overrides:
        cmd += ["--set", item]
    child = run_child(cmd)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    if completion_length is not None:
        lengths = {r["completions/mean_length"] for r in records if "completions/mean_length" in r}
        if lengths != {completion_length}:
            raise SystemExit(
                f"completions were not all {completion_length} tokens long: mean lengths {sorted(lengths)}"
            )
    return child, run_dir, records, json.loads((run_dir / "run_info.json").read_text())


def median(values) -> float:
    return statistics.median(values)


def build_model(folder: Path, *, n_layer: int, n_embd: int, n_head: int, n_positions: int = 128, seed: int = 0) -> int:
    """A random-init GPT-2 with the demo's character tokenizer, saved like a Hub checkout. Returns
    its parameter count. Random weights sample the end token about once in 16 tokens; the
    benchmarks forbid it with `generation_kwargs: {min_new_tokens: L}`, so every completion runs
    to max_completion_length and compute per step is the same in every run."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from grpolab.demo.tiny_model import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.model_max_length = n_positions
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_positions=n_positions,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def write_addition_jsonl(path: Path, n: int = 512, seed: int = 0) -> Path:
    """Training prompts from the built-in addition task as a plain JSONL file both runs read."""
    from grpolab.demo.addition import make_addition_rows

    path.write_text("".join(json.dumps(row) + "\n" for row in make_addition_rows(n, seed=seed, split="train")))
    return path


def machine() -> dict:
    """Where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    versions = {}
    for name in ("torch", "transformers", "trl", "accelerate"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "gpu": None,
        "python": platform.python_version(),
        **versions,
    }


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {"benchmark": name, "measured": time.strftime("%Y-%m-%d"), "machine": machine(), **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def flops_per_step(
    params: int, prompt_tokens: int, completion_tokens: int, completions: int, *, reference: bool, old_logprobs: bool
) -> dict:
    """FLOPs of one optimizer step, by the usual estimate: 2N per generated (and prefilled) token,
    6N per trained token (forward + backward), 2N per token for each extra forward pass (the
    reference model when beta != 0, old log-probs when a round feeds several optimizer steps).
    Attention's own FLOPs are left out (small next to N at these lengths)."""
    sequence = prompt_tokens + completion_tokens
    parts = {
        "generation": 2 * params * sequence * completions,
        "training": 6 * params * sequence * completions,
        "reference": 2 * params * sequence * completions if reference else 0,
        "old_logprobs": 2 * params * sequence * completions if old_logprobs else 0,
    }
    return {**parts, "total": sum(parts.values())}


def matmul_peak_flops(size: int = 1024, seconds: float = 2.0, dtype: str = "float32") -> float:
    """The machine's measured matmul throughput (FLOP/s) in `dtype` with torch's default threads:
    the ceiling the FLOP estimates are compared to (a run in bf16 autocast against the bf16 one)."""
    import torch

    a, b = torch.randn(size, size, dtype=getattr(torch, dtype)), torch.randn(size, size, dtype=getattr(torch, dtype))
    for _ in range(3):
        a @ b  # warm-up
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * size**3 / (time.perf_counter() - t))
    return best
