"""The prepared GPU check: every cluster path of grpolab trained for real on one GPU, in one call.

    python3 bench/gpu_check/run.py [--budget 510] [--out bench/results/gpu_check.json]
    python3 bench/gpu_check/run.py --cpu          # the same stages at toy size on CPU (tests)

It builds a random-init Qwen2-style model locally (hidden 896, 24 layers, 14 query / 2 KV heads,
intermediate 4864, Qwen2.5's 151936-entry vocabulary over the demo's character tokenizer, tied
embeddings: ~0.49B parameters; nothing is downloaded), then runs the stages below in priority
order, each in fresh processes with its own timeout, until the time budget is spent:

  gpu1            1 GPU, grpolab training in its own process (model.dtype auto)
  zero3_ref       DeepSpeed ZeRO-3 with the reference model (beta > 0) and the final 16-bit save
  zero2           DeepSpeed ZeRO-2
  lora_zero3      LoRA under ZeRO-3: the adapter and the merged model are checked tensor by tensor
  fsdp2           FSDP2
  bf16_vs_fp32    the same run with bf16 weights and with fp32 weights: fraction of weights changed
  sigterm_zero2   SIGTERM to the launcher during a ZeRO-2 run: checkpoint and status interrupted
  vllm_colocate   vLLM colocate generation (when vLLM imports; skipped with the reason otherwise)
  zero3_vllm      ZeRO-3 + vLLM colocate (likewise)
  plain_trl       the gpu1 run as the plain TRL script bench/plain_trl_grpo.py: the overhead ratio

The multi-process backends start the documented hand way, `accelerate launch --config_file
configs/accelerate/<preset>.yaml --num_processes 1 -m grpolab train ...`, with one process: one
GPU cannot hold two NCCL ranks, and one rank still runs each engine's own code (zero.Init, the
gathers for generation, the collective save). Each stage reports pass/fail/skip with the reason,
the engine every rank really trained under, optimizer-step time, tokens per second, peak GPU
memory (torch.cuda.max_memory_allocated, from probe_site/sitecustomize.py), the fraction of
weights the run changed, and the estimated FLOP rate as a fraction of the GPU's dense bf16 peak.

On a machine without trl, deepspeed, datasets, pydantic or ruamel.yaml, the script first installs
the wheels in .carry/wheels (bench/gpu_check/build_wheels.sh makes them; README.md says how to
carry them) into a private folder that only its child processes see.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
from common import flops_per_step, matmul_peak_flops  # noqa: E402

PRESETS = REPO / "configs" / "accelerate"
PROBE_SITE = HERE / "probe_site"
REQUIREMENTS = HERE / "requirements.txt"
DEFAULT_WHEELS = REPO / ".carry" / "wheels"

# Dense bf16 tensor-core peaks from the vendors' datasheets (no sparsity), by a fragment of
# torch.cuda.get_device_name(). The H200 and H100 SXM share the 989 TFLOP/s figure (a measured
# 8192^3 bf16 matmul on this project's H200 ran at ~790). First match wins: longer names first.
BF16_PEAK_FLOPS = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "L40": 181e12,
    "L4": 121e12,
    "A10G": 70e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 6000 Ada": 364e12,
}

QWEN2_05B = dict(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    vocab_size=151936,
    max_position_embeddings=2048,
    rope_theta=1_000_000.0,
    tie_word_embeddings=True,
)
QWEN2_TOY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=64,
    vocab_size=None,  # the demo tokenizer's own 16 entries
    max_position_embeddings=128,
    tie_word_embeddings=True,
)


@dataclass(frozen=True)
class Size:
    """Everything that differs between the GPU check and its toy CPU version."""

    model: dict
    steps: int
    per_device: int
    generations: int
    completion: int
    samples: int
    sigterm_steps: int


GPU_SIZE = Size(QWEN2_05B, steps=5, per_device=16, generations=8, completion=64, samples=256, sigterm_steps=200)
CPU_SIZE = Size(QWEN2_TOY, steps=2, per_device=2, generations=2, completion=4, samples=16, sigterm_steps=400)


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    timeout_gpu: int  # seconds on the GPU, process start and model load included
    timeout_cpu: int
    preset: str | None = None  # accelerate preset for a hand launch; None = grpolab's own process
    engine: tuple = ("NO", None, None)  # (distributed type, ZeRO stage, FSDP version) every rank must show
    sets: tuple = ()  # --set KEY=VALUE for this stage
    needs_gpu: bool = False
    needs_vllm: bool = False
    cpu_skip: str | None = None  # why the toy CPU version skips it


STAGES = (
    Stage("gpu1", "1 GPU, grpolab in its own process (model.dtype auto)", 75, 240),
    Stage(
        "zero3_ref",
        "DeepSpeed ZeRO-3, reference model (beta 0.04), final 16-bit save",
        90,
        300,
        preset="zero3.yaml",
        engine=("DEEPSPEED", 3, None),
        sets=("grpo.beta=0.04",),
    ),
    Stage("zero2", "DeepSpeed ZeRO-2", 75, 300, preset="zero2.yaml", engine=("DEEPSPEED", 2, None)),
    Stage(
        "lora_zero3",
        "LoRA (r 16, all-linear) under ZeRO-3: adapter saved whole, merge equals base + B@A",
        90,
        300,
        preset="zero3.yaml",
        engine=("DEEPSPEED", 3, None),
        sets=(
            "model.lora.enabled=true",
            "model.lora.r=16",
            "model.lora.alpha=32",  # lora_merge_check's alpha / r
            "model.lora.dropout=0.0",
            "training.learning_rate=1e-4",
        ),
    ),
    Stage(
        "fsdp2",
        "FSDP2",
        75,
        240,
        preset="fsdp2.yaml",
        engine=("FSDP", None, 2),
        cpu_skip="accelerate 1.15 applies FSDP only to GPU-like distributed types (state.py:986-1013): "
        "on CPU ranks it silently trains DDP (tests/test_cluster_backends.py shows it)",
    ),
    Stage(
        "bf16_vs_fp32",
        "the same run with bf16 weights and with fp32 weights (lr 1e-6, constant): weights changed",
        120,
        360,
    ),
    Stage(
        "sigterm_zero2",
        "SIGTERM to the launcher after the first ZeRO-2 step: checkpoint, status interrupted",
        90,
        300,
        preset="zero2.yaml",
        engine=("DEEPSPEED", 2, None),
    ),
    Stage(
        "vllm_colocate",
        "vLLM colocate generation, 1 GPU",
        120,
        0,
        sets=("cluster.use_vllm=true", "cluster.vllm_mode=colocate", "cluster.vllm_gpu_memory_utilization=0.3"),
        needs_gpu=True,
        needs_vllm=True,
    ),
    Stage(
        "zero3_vllm",
        "ZeRO-3 + vLLM colocate",
        120,
        0,
        preset="zero3.yaml",
        engine=("DEEPSPEED", 3, None),
        sets=("cluster.use_vllm=true", "cluster.vllm_mode=colocate", "cluster.vllm_gpu_memory_utilization=0.3"),
        needs_gpu=True,
        needs_vllm=True,
    ),
    Stage("plain_trl", "the gpu1 run as the plain TRL script (overhead ratio)", 75, 240),
)
STAGE_NAMES = [s.name for s in STAGES]
MIN_STAGE_S = {"gpu": 30, "cpu": 20}  # a stage that cannot get this much of the budget is skipped


# ----------------------------------------------------------------------------- environment
@dataclass
class Context:
    cpu: bool
    size: Size
    work: Path
    env: dict
    model_dir: Path
    params: int
    prompt_tokens: float
    machine: dict
    peak_flops: float | None
    peak_source: str
    deadline: float
    launch: str = "hand"  # "hand": accelerate launch of the preset; "self": grpolab --mode cluster launches
    results: dict = field(default_factory=dict)


def pins() -> dict[str, str]:
    out = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[name] = version
    return out


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def bootstrap(wheels: Path, site: Path, allow_install: bool) -> dict:
    """Install the pinned wheels into `site` when this Python lacks any of them (or has another
    version): the children get `site` first on PYTHONPATH, so they import exactly the pins."""
    wanted = pins()
    differ = {n: _installed(n) for n, v in wanted.items() if _installed(n) != v}
    info = {"wanted": wanted, "differ_here": differ, "installed_from": None, "site": None}
    if not differ:
        return info
    if not allow_install:
        info["error"] = f"missing or other versions here: {differ}; --no-install was given"
        return info
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not found:
        info["error"] = (
            f"missing or other versions here: {differ}, and no wheels in {wheels} "
            "(run bench/gpu_check/build_wheels.sh and carry .carry/wheels)"
        )
        return info
    started = time.monotonic()
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    cmd += ["--no-cache-dir", "--upgrade", "--target", str(site), *map(str, found)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    info.update(installed_from=str(wheels), site=str(site), install_s=round(time.monotonic() - started, 1))
    if done.returncode != 0:
        info["error"] = f"pip install of the wheels failed: {done.stderr[-2000:]}"
    return info


def child_env(site: Path | None, cpu: bool) -> dict:
    env = dict(os.environ)
    path = [str(PROBE_SITE), *([str(site)] if site else []), str(REPO), env.get("PYTHONPATH", "")]
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in path if p),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        WANDB_MODE="offline",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        GOMP_SPINCOUNT=env.get("GOMP_SPINCOUNT", "1000"),
    )
    for key in ("GRPOLAB_RUN_DIR", "WORLD_SIZE", "RANK", "LOCAL_RANK", "WANDB_API_KEY"):
        env.pop(key, None)
    if cpu:
        env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"), CUDA_VISIBLE_DEVICES="")
    return env


FACTS = r"""
import importlib.util, json, torch
out = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
out["vllm"] = importlib.util.find_spec("vllm") is not None
if out["cuda"]:
    p = torch.cuda.get_device_properties(0)
    out.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(), cuda_version=torch.version.cuda)
    out.update(capability=list(torch.cuda.get_device_capability(0)), gpu_memory_gib=round(p.total_memory / 2**30, 1))
for name in ("transformers", "trl", "accelerate", "deepspeed", "peft", "datasets", "pydantic"):
    try:
        out[name] = __import__(name).__version__
    except Exception as exc:
        out[name] = f"not importable: {type(exc).__name__}: {exc}"[:200]
print("FACTS " + json.dumps(out))
"""

BUILD = r"""
import json, sys, torch
from pathlib import Path
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
from grpolab.demo.tiny_model import build_tokenizer

spec, out = json.loads(sys.argv[1]), Path(sys.argv[2])
demo = build_tokenizer()
vocab = dict(demo.get_vocab())
size = spec.pop("vocab_size") or len(vocab)
# The demo's characters keep their ids; filler entries pad the vocabulary to the real model's
# size, so the embedding, LM head and logits cost what they cost in Qwen2.5-0.5B. Prompts only
# ever encode to characters (one piece per character); sampled fillers decode to "<xN>".
for i in range(len(vocab), size):
    vocab[f"<x{i}>"] = i
tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=demo.unk_token))
tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
tok.decoder = decoders.Fuse()
tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=demo.pad_token, eos_token=demo.eos_token,
                                    unk_token=demo.unk_token, padding_side="left",
                                    model_max_length=spec["max_position_embeddings"])
config = Qwen2Config(vocab_size=size, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                     bos_token_id=tokenizer.eos_token_id, **spec)
torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"
with torch.device(device):
    model = Qwen2ForCausalLM(config)
model.generation_config.pad_token_id = tokenizer.pad_token_id
model.save_pretrained(out)  # fp32 on disk: the bf16 and fp32 arms start from the same exact values
tokenizer.save_pretrained(out)
print("PARAMS " + json.dumps(sum(p.numel() for p in model.parameters())))
"""


def python_child(code: str, *args: str, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def tagged(out: str, tag: str):
    lines = [ln for ln in out.splitlines() if ln.startswith(tag + " ")]
    return json.loads(lines[-1][len(tag) + 1 :]) if lines else None


def peak_for(gpu_name: str | None) -> tuple[float | None, str]:
    if not gpu_name:
        return None, "no GPU"
    for fragment, peak in BF16_PEAK_FLOPS.items():
        if fragment in gpu_name:
            return peak, f"datasheet dense bf16 for {fragment}"
    return None, f"no bf16 peak known for {gpu_name!r} (add it to BF16_PEAK_FLOPS)"


# ----------------------------------------------------------------------------- one stage
def remaining(ctx: Context) -> float:
    return ctx.deadline - time.monotonic()


def base_config(ctx: Context, out_dir: Path) -> dict:
    s = ctx.size
    return {
        "output_dir": str(out_dir),
        "model": {"name_or_path": str(ctx.model_dir), "dtype": "auto"},
        "data": {"max_samples": s.samples},
        # numeric_match is what bench/plain_trl_grpo.py scores; the hash reward gives the random
        # model's completions a spread, so the updates (and weights changed) are not all zero.
        "rewards": [
            {"name": "numeric_match", "weight": 1.0},
            {"name": f"{HERE / 'varied_reward.py'}:text_hash_reward", "weight": 1.0},
        ],
        "training": {
            "max_steps": s.steps,
            "per_device_train_batch_size": s.per_device,
            "gradient_accumulation_steps": 1,
            "learning_rate": 3.0e-5,
            "logging_steps": 1,
            # No periodic checkpoints: a 0.5B model's optimizer state is ~6 GB a save. The SIGTERM
            # stage's checkpoint is asked for by grpolab's stop callback, which this does not stop.
            "save_strategy": "no",
            "gradient_checkpointing": False,
            "bf16": not ctx.cpu,  # the H200 computes bf16 natively; fp32 on every CPU
            "seed": 0,
        },
        "grpo": {
            "num_generations": s.generations,
            "generation_batch_size": "auto",
            "beta": 0.0,
            # Random weights rarely sample the end token; this makes it never, so every
            # completion is max_completion_length long and every stage does the same work.
            "generation_kwargs": {"min_new_tokens": s.completion},
        },
        "generation": {"max_completion_length": s.completion, "temperature": 1.0},
        "logging": {"report_to": ["none"]},
    }


SELF_LAUNCH = {"zero2.yaml": ("deepspeed", 2), "zero3.yaml": ("deepspeed", 3), "fsdp2.yaml": ("fsdp", None)}


def grpolab_cmd(ctx: Context, stage: Stage, config: Path, run_name: str, sets: tuple) -> list[str]:
    train = ["-m", "grpolab", "train", "--config", str(config), "--run-name", run_name]
    for item in sets:
        train += ["--set", item]
    if stage.preset is None:
        return [sys.executable, *train, "--mode", "local"]
    if ctx.launch == "self":
        # grpolab's own launch: the plan picks the launcher and writes the per-run accelerate files.
        backend, zero_stage = SELF_LAUNCH[stage.preset]
        own = ["--set", f"cluster.backend={backend}", "--set", "cluster.num_processes=1"]
        own += ["--set", f"cluster.zero_stage={zero_stage}"] if zero_stage else []
        own += ["--set", "cluster.device=cpu"] if ctx.cpu else []
        return [sys.executable, *train, *own, "--mode", "cluster"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(PRESETS / stage.preset)]
    launch += ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no" if ctx.cpu else "bf16"]
    return [*launch, *train, "--mode", "cluster"]


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    handle.write("$ " + " ".join(cmd) + "\n")
    handle.flush()
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop_group(proc: subprocess.Popen) -> None:
    """The whole process group the stage started (launcher, ranks, compile workers)."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait(proc: subprocess.Popen, timeout: float) -> tuple[int | None, bool]:
    try:
        return proc.wait(timeout=max(1.0, timeout)), False
    except subprocess.TimeoutExpired:
        stop_group(proc)
        return proc.returncode, True


def log_tail(log: Path, lines: int = 25) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    keep = [ln for ln in text.splitlines() if ln.strip() and "Warning" not in ln and "warnings.warn" not in ln]
    return "\n".join(keep[-lines:])


def read_probes(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("probe-*.json"))] if folder.is_dir() else []


def read_records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def timing(records: list[dict]) -> dict:
    """Optimizer-step wall time (median gap between consecutive step records, generation
    included; the first step's warm-up is left out) and tokens per second over the same steps."""
    steps = [r for r in records if "loss" in r and "time" in r]
    final = next((r for r in reversed(records) if "train_runtime" in r), None)
    out: dict = {"steps_logged": len(steps)}
    if len(steps) >= 2:
        gaps = [b["time"] - a["time"] for a, b in zip(steps, steps[1:])]
        out["step_time_s"] = statistics.median(gaps)
        tokens = steps[-1].get("num_tokens", 0) - steps[0].get("num_tokens", 0)
        out["tokens_per_s"] = tokens / max(steps[-1]["time"] - steps[0]["time"], 1e-9)
    elif steps and final:
        out["step_time_s"] = final["train_runtime"] / len(steps)
        out["tokens_per_s"] = steps[-1].get("num_tokens", 0) / max(final["train_runtime"], 1e-9)
    trl_times = [r["step_time"] for r in steps[1:] or steps if "step_time" in r]
    if trl_times:
        out["train_part_s"] = statistics.median(trl_times)  # TRL's step_time: the backward pass, no generation
    return out


def _tensors(folder: Path) -> dict:
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    handles = [safe_open(str(f), framework="pt") for f in files]
    return {k: h for h in handles for k in h.keys()}


def weights_changed(initial: Path, final: Path) -> dict:
    """Fraction of the initial model's weights that differ in the final one, each initial tensor
    first cast to the dtype the final one was saved in (so bf16 rounding at load is not a change)."""
    before, after = _tensors(initial), _tensors(final)
    common = sorted(set(before) & set(after))
    if not common:
        return {"weights_changed": None, "weights_error": f"no common tensors in {final}"}
    changed = total = 0
    dtypes = set()
    for name in common:
        a, b = before[name].get_tensor(name), after[name].get_tensor(name)
        if a.shape != b.shape:
            return {"weights_changed": None, "weights_error": f"{name}: shape {tuple(b.shape)} != {tuple(a.shape)}"}
        dtypes.add(str(b.dtype).replace("torch.", ""))
        changed += int((a.to(b.dtype) != b).sum())
        total += a.numel()
    return {"weights_changed": changed / total, "saved_dtype": "/".join(sorted(dtypes)), "tensors": len(common)}


def lora_merge_check(initial: Path, run_dir: Path, alpha: float, r: int) -> dict:
    """The adapter is whole (no 0-element ZeRO-3 placeholders), it trained (B != 0), and every
    adapted weight of run_dir/model equals base + (alpha/r) B@A up to the saved dtype's rounding."""
    import torch

    adapter_files = sorted((run_dir / "adapter").glob("*.safetensors"))
    if not adapter_files:
        return {"lora_ok": False, "lora_error": "no adapter/*.safetensors"}
    adapter = _tensors(run_dir / "adapter")
    empty = [k for k, h in adapter.items() if h.get_slice(k).get_shape() in ([0], [])]
    if empty:
        return {"lora_ok": False, "lora_error": f"{len(empty)} empty adapter tensors, e.g. {empty[0]}"}
    base, merged = _tensors(initial), _tensors(run_dir / "model")
    worst, modules, trained = 0.0, 0, 0
    for key_a in [k for k in adapter if ".lora_A." in k]:
        key_b = key_a.replace(".lora_A.", ".lora_B.")
        target = re.sub(r"^base_model\.model\.", "", key_a.replace(".lora_A.weight", ".weight"))
        if target not in merged or target not in base:
            return {"lora_ok": False, "lora_error": f"{target} missing from the merged or the base model"}
        a, b = adapter[key_a].get_tensor(key_a).float(), adapter[key_b].get_tensor(key_b).float()
        trained += int(bool(b.abs().max() > 0))
        want = base[target].get_tensor(target).float() + (alpha / r) * (b @ a)
        got = merged[target].get_tensor(target)
        tolerance = 2 * torch.finfo(got.dtype).eps * float(want.abs().max()) + 1e-7
        worst = max(worst, float((got.float() - want).abs().max()) / tolerance)
        modules += 1
    ok = modules > 0 and trained > 0 and worst <= 1.0
    return {"lora_ok": ok, "lora_modules": modules, "lora_trained_modules": trained, "lora_error_vs_tol": worst}


def flop_fraction(ctx: Context, metrics: dict, *, reference: bool, lora: bool) -> dict:
    step = metrics.get("step_time_s")
    if not step:
        return {}
    s = ctx.size
    flops = flops_per_step(
        ctx.params, ctx.prompt_tokens, s.completion, s.per_device, reference=reference, old_logprobs=False
    )
    total = flops["total"]
    if lora:  # no weight gradients for the frozen base: 4N per trained token instead of 6N
        total -= 2 * ctx.params * (ctx.prompt_tokens + s.completion) * s.per_device
    out = {"flops_per_step": total, "achieved_tflops": total / step / 1e12}
    if ctx.peak_flops:
        out["flop_fraction_of_peak"] = total / step / ctx.peak_flops
    return out


def engine_problem(stage: Stage, probes: list[dict]) -> str | None:
    engines = [p["engine"] for p in probes if "engine" in p]
    if not engines:
        return "no training process recorded its engine (probe_site/sitecustomize.py did not run?)"
    want_type, want_stage, want_fsdp = stage.engine
    for e in engines:
        if (e["type"], e["zero_stage"], e["fsdp_version"]) != (want_type, want_stage, want_fsdp):
            return (
                f"trained under {e['type']} (ZeRO stage {e['zero_stage']}, FSDP {e['fsdp_version']}), "
                f"asked for {want_type} (ZeRO stage {want_stage}, FSDP {want_fsdp})"
            )
    return None


def run_training(
    ctx: Context, stage: Stage, name: str, sets: tuple, timeout: float, sigterm_after_step: int | None = None
) -> dict:
    """One grpolab training of `stage`: start, wait (or SIGTERM the launcher after a step), and
    read back the run directory, the probes and the timings."""
    out_dir = ctx.work / "runs" / name
    probes = ctx.work / "probes" / name
    log = ctx.work / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    config = ctx.work / f"{name}.json"
    config.write_text(json.dumps(base_config(ctx, out_dir), indent=1))
    env = dict(ctx.env, GPU_CHECK_PROBE_DIR=str(probes))
    cmd = grpolab_cmd(ctx, stage, config, name, (*stage.sets, *sets))
    started = time.monotonic()
    proc = start(cmd, env, log)
    run_dir = out_dir / name
    signalled_at = None
    if sigterm_after_step is not None:
        while proc.poll() is None and time.monotonic() - started < timeout:
            if any(r.get("step", 0) >= sigterm_after_step for r in read_records(run_dir) if "loss" in r):
                proc.send_signal(signal.SIGTERM)  # what scancel / a preemption delivers to the job step
                signalled_at = time.monotonic()
                break
            time.sleep(0.5)
    code, timed_out = wait(proc, timeout - (time.monotonic() - started))
    result = {
        "exit_code": code,
        "wall_s": round(time.monotonic() - started, 1),
        "log": str(log),
        "command": " ".join(cmd[1:]),
    }
    if signalled_at is not None:
        result["exit_after_sigterm_s"] = round(time.monotonic() - signalled_at, 1)
    if timed_out:
        result["error"] = f"timed out after {timeout:.0f} s"
    info_file = run_dir / "run_info.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    result.update(status_in_run=info.get("status"), global_step=info.get("global_step"), run_error=info.get("error"))
    records = read_records(run_dir)
    result.update(timing(records))
    probe_list = read_probes(probes)
    peaks = [p["peak_gpu_bytes"] for p in probe_list if p.get("peak_gpu_bytes")]
    result["peak_gpu_mib"] = round(max(peaks) / 2**20, 1) if peaks else None
    result["engines"] = [p["engine"] for p in probe_list if "engine" in p]
    if (problem := engine_problem(stage, probe_list)) and "error" not in result:
        result["engine_error"] = problem
    # The training plan's device line: "...; precision bf16 autocast; weights bfloat16; generation ...".
    dtype = (
        re.search(r"; precision [^;\n]*; weights (\w+);", log.read_text(errors="replace")) if log.exists() else None
    )
    result["policy_weights"] = dtype.group(1) if dtype else None
    errors = (
        [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("error")] if log.exists() else []
    )
    if errors:
        result["log_error"] = errors[-1][:600]  # grpolab's one-line error (a config refused before training)
    if (run_dir / "model").is_dir():
        result.update(weights_changed(ctx.model_dir, run_dir / "model"))
    result["run_dir"] = str(run_dir)
    result["trl_args"] = info.get("trl_args")
    return result


def verdict(result: dict, expect_status: str = "finished") -> tuple[str, str | None]:
    """pass, or fail with the first reason found."""
    if result.get("error"):
        return "fail", result["error"]
    if result.get("exit_code") not in (0,) and expect_status == "finished":
        why = result.get("run_error") or result.get("log_error") or "see the log tail"
        return "fail", f"exit code {result.get('exit_code')}: {why}"
    if result.get("status_in_run") != expect_status:
        return "fail", f"run status {result.get('status_in_run')!r}, expected {expect_status!r}"
    if result.get("engine_error"):
        return "fail", result["engine_error"]
    if result.get("weights_error"):
        return "fail", result["weights_error"]
    if expect_status == "finished" and not result.get("weights_changed"):
        return "fail", "the final model equals the initial one (nothing trained)"
    return "pass", None


def stage_gpu1(ctx: Context, stage: Stage, timeout: float) -> dict:
    r = run_training(ctx, stage, stage.name, (), timeout)
    r["status"], r["reason"] = verdict(r)
    r.update(flop_fraction(ctx, r, reference=False, lora=False))
    return r


def stage_backend(ctx: Context, stage: Stage, timeout: float) -> dict:
    r = run_training(ctx, stage, stage.name, (), timeout)
    r["status"], r["reason"] = verdict(r)
    lora = "model.lora.enabled=true" in stage.sets
    if lora and r["status"] == "pass":
        r.update(lora_merge_check(ctx.model_dir, Path(r["run_dir"]), alpha=32, r=16))
        if not r["lora_ok"]:
            r["status"], r["reason"] = (
                "fail",
                r.get("lora_error") or f"merged weights off by {r['lora_error_vs_tol']:.1f}x tolerance",
            )
    r.update(flop_fraction(ctx, r, reference=any(s.startswith("grpo.beta=") for s in stage.sets), lora=lora))
    return r


def stage_contrast(ctx: Context, stage: Stage, timeout: float) -> dict:
    """bf16 weights (AdamW straight on bf16, no fp32 master copy) vs fp32 weights with bf16
    autocast (TRL's default), same small constant learning rate: how many updates bf16 drops."""
    common = ("training.learning_rate=1e-6", "training.lr_scheduler_type=constant")
    out: dict = {"arms": {}}
    started = time.monotonic()
    for arm, dtype in (("bf16_weights", "bfloat16"), ("fp32_weights", "float32")):
        left = timeout / 2 if arm == "bf16_weights" else timeout - (time.monotonic() - started)
        left = min(left, remaining(ctx) - 5)
        r = run_training(ctx, stage, f"{stage.name}_{arm}", (*common, f"model.dtype={dtype}"), left)
        r["status"], r["reason"] = verdict(r)
        r.update(flop_fraction(ctx, r, reference=False, lora=False))
        r.pop("trl_args", None)
        out["arms"][arm] = r
    arms = out["arms"]
    failed = [f"{k}: {v['reason']}" for k, v in arms.items() if v["status"] != "pass"]
    out["status"], out["reason"] = ("fail", "; ".join(failed)) if failed else ("pass", None)
    b, f = arms["bf16_weights"].get("weights_changed"), arms["fp32_weights"].get("weights_changed")
    if b is not None and f is not None:
        out["finding"] = (
            f"after {ctx.size.steps} steps at lr 1e-6: {b:.1%} of bf16 weights changed, {f:.1%} of fp32 weights"
        )
    for key in ("step_time_s", "tokens_per_s", "peak_gpu_mib", "weights_changed", "flop_fraction_of_peak"):
        out[key] = {k: v.get(key) for k, v in arms.items()}
    return out


def stage_sigterm(ctx: Context, stage: Stage, timeout: float) -> dict:
    steps = f"training.max_steps={ctx.size.sigterm_steps}"
    r = run_training(ctx, stage, stage.name, (steps,), timeout, sigterm_after_step=1)
    r["status"], r["reason"] = verdict(r, expect_status="interrupted")
    r.update(flop_fraction(ctx, r, reference=False, lora=False))
    checkpoints = sorted(Path(r["run_dir"]).glob("checkpoint-*"))
    r["checkpoints"] = [c.name for c in checkpoints]
    if r["status"] == "pass" and not checkpoints:
        r["status"], r["reason"] = "fail", "status interrupted but no checkpoint-N was written"
    if r["status"] == "pass" and r.get("exit_after_sigterm_s") is None:
        r["status"], r["reason"] = "fail", "the run ended before the first step was logged; no SIGTERM was sent"
    return r


def stage_plain(ctx: Context, stage: Stage, timeout: float) -> dict:
    """bench/plain_trl_grpo.py given gpu1's exact GRPOConfig arguments (run_info.json) and the
    policy dtype gpu1 loaded, on the same model and prompts: grpolab's overhead per step."""
    ref = ctx.results.get("gpu1", {})
    if ref.get("status") != "pass" or not ref.get("trl_args"):
        return {"status": "skip", "reason": "needs a passing gpu1 stage (its GRPOConfig arguments)"}
    work = ctx.work / "plain"
    work.mkdir(parents=True, exist_ok=True)
    kwargs = dict(ref["trl_args"], output_dir=str(work / "out"), run_name="plain_trl")
    # The plain script scores numeric_match alone (the same generation, loss and backward; only
    # the cheap hash reward is missing), so it gets one reward weight.
    kwargs["reward_weights"] = [1.0]
    # TRL loads a model given by path in fp32 unless told otherwise; load what gpu1 trained.
    kwargs["model_init_kwargs"] = {"dtype": ref.get("policy_weights") or "float32"}
    (work / "grpo_config.json").write_text(json.dumps(kwargs))
    from grpolab.demo.addition import make_addition_rows

    rows = make_addition_rows(ctx.size.samples, seed=0, split="train")
    (work / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    probes = ctx.work / "probes" / stage.name
    log = ctx.work / "logs" / f"{stage.name}.log"
    cmd = [sys.executable, str(REPO / "bench" / "plain_trl_grpo.py"), str(work / "grpo_config.json")]
    cmd += [str(ctx.model_dir), str(work / "data.jsonl")]
    started = time.monotonic()
    proc = start(cmd, dict(ctx.env, GPU_CHECK_PROBE_DIR=str(probes)), log)
    code, timed_out = wait(proc, timeout)
    r: dict = {"exit_code": code, "wall_s": round(time.monotonic() - started, 1), "log": str(log)}
    text = log.read_text(errors="replace")
    # The plain script logs through transformers' console printer: the per-step dicts on stdout.
    records = []
    for match in re.finditer(r"\{'loss'.*?\}", text):
        try:
            records.append({k: float(v) for k, v in json.loads(match.group().replace("'", '"')).items()})
        except (ValueError, json.JSONDecodeError):
            continue
    result = tagged(text, "RESULT")
    probe_list = read_probes(probes)
    peaks = [p["peak_gpu_bytes"] for p in probe_list if p.get("peak_gpu_bytes")]
    r["peak_gpu_mib"] = round(max(peaks) / 2**20, 1) if peaks else None
    if timed_out or code != 0 or not result:
        r["status"], r["reason"] = "fail", "timed out" if timed_out else f"exit code {code}"
        return r
    steps = result["global_step"]
    r["step_time_s"] = result["train_runtime"] / steps
    r["tokens_per_s"] = None
    if records and "num_tokens" in records[-1]:
        r["tokens_per_s"] = records[-1]["num_tokens"] / result["train_runtime"]
    ref_whole = ref.get("train_runtime_per_step")
    r["gpu1_step_time_same_measure_s"] = ref_whole
    if ref_whole:
        r["overhead_ratio"] = ref_whole / r["step_time_s"]  # grpolab / plain, both train_runtime / steps
    if (work / "out" / "model").is_dir():
        r.update(weights_changed(ctx.model_dir, work / "out" / "model"))
    r.update(flop_fraction(ctx, r, reference=False, lora=False))
    # numeric_match alone scores random weights 0 everywhere: no update is expected here, only the time.
    r["status"], r["reason"] = "pass", None
    return r


RUNNERS = {
    "gpu1": stage_gpu1,
    "bf16_vs_fp32": stage_contrast,
    "sigterm_zero2": stage_sigterm,
    "plain_trl": stage_plain,
}


def train_runtime_per_step(result: dict) -> float | None:
    """train_runtime / steps from the run's metrics (the measure the plain script reports)."""
    run_dir = result.get("run_dir")
    if not run_dir:
        return None
    records = read_records(Path(run_dir))
    final = next((r for r in reversed(records) if "train_runtime" in r), None)
    steps = result.get("global_step")
    return final["train_runtime"] / steps if final and steps else None


# ----------------------------------------------------------------------------- report
SUMMARY_KEYS = ("step_time_s", "tokens_per_s", "peak_gpu_mib", "weights_changed", "flop_fraction_of_peak")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " / ".join(_cell(v) for v in value.values())
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# GPU check ({report['mode']})",
        "",
        f"{m.get('gpu') or 'CPU'}; torch {m.get('torch')}, transformers {m.get('transformers')}, trl {m.get('trl')}, "
        f"deepspeed {m.get('deepspeed')}; model {report['model']['params'] / 1e6:.3g}M parameters; "
        f"{report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget; peak {report['peak']['source']}.",
        "",
        "| stage | status | step s | tokens/s | peak GPU MiB | weights changed | FLOP fraction | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in STAGE_NAMES:
        r = report["stages"].get(name, {})
        note = r.get("reason") or r.get("finding") or ""
        if name == "plain_trl" and r.get("overhead_ratio"):
            note = f"grpolab/plain step time {r['overhead_ratio']:.2f}"
        cells = [_cell(r.get(k)) for k in SUMMARY_KEYS]
        lines.append(f"| {name} | {r.get('status', '-')} | " + " | ".join(cells) + f" | {note.replace('|', '/')} |")
    lines.append("")
    lines.append("bf16_vs_fp32 cells read bf16 weights / fp32 weights.")
    return "\n".join(lines) + "\n"


def write_report(ctx_or_none, report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(report))


def write_logs(work: Path, out: Path) -> None:
    """The tail of every stage's log, in one file next to the report (the GPU call returns few files)."""
    parts = []
    for log in sorted((work / "logs").glob("*.log")):
        parts.append(f"===== {log.stem}\n{log_tail(log, 60)}\n")
    out.with_name(out.stem + "_logs.txt").write_text("\n".join(parts))


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="toy size on CPU, GPU-only stages skipped (tests)")
    parser.add_argument("--budget", type=float, help="seconds for everything (default 510 on GPU, 1500 with --cpu)")
    parser.add_argument("--out", type=Path, help="report JSON (default bench/results/gpu_check.json, _cpu with --cpu)")
    parser.add_argument("--only", help="comma-separated stages to run (the others are skipped)")
    parser.add_argument("--wheels", type=Path, default=DEFAULT_WHEELS, help="wheels to install when packages lack")
    parser.add_argument("--no-install", action="store_true", help="never install wheels")
    parser.add_argument(
        "--launch",
        choices=("hand", "self"),
        default="hand",
        help="backends: `accelerate launch` of the preset (hand, default) or grpolab's own "
        "`--mode cluster --set cluster.backend=...` launch with 1 process (self)",
    )
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed at the end)")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    budget = args.budget or (1500.0 if args.cpu else 510.0)
    out = args.out or REPO / "bench" / "results" / ("gpu_check_cpu.json" if args.cpu else "gpu_check.json")
    only = set(args.only.split(",")) if args.only else None
    if only and (unknown := only - set(STAGE_NAMES)):
        parser.error(f"unknown stages {sorted(unknown)}; stages are {', '.join(STAGE_NAMES)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    site = work / "site"
    setup = bootstrap(args.wheels, site, not args.no_install)
    env = child_env(site if setup.get("site") else None, args.cpu)
    if setup.get("site"):
        sys.path.insert(0, str(site))  # this process reads the prompts through grpolab (pydantic) too
    size = CPU_SIZE if args.cpu else GPU_SIZE
    report: dict = {
        "check": "gpu_check",
        "mode": "cpu" if args.cpu else "gpu",
        "launch": args.launch,
        "budget_s": budget,
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "packages": setup,
        "stages": {},
    }

    def finish(code: int) -> int:
        report["elapsed_s"] = round(time.monotonic() - t0, 1)
        write_report(None, report, out)
        if (work / "logs").is_dir():
            write_logs(work, out)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
        print(markdown(report))
        return code

    facts_run = python_child(FACTS, env=env, timeout=180)
    facts = tagged(facts_run.stdout, "FACTS") or {"error": facts_run.stderr[-2000:]}
    report["machine"] = facts
    report["model"] = {"params": 0, "config": size.model}
    report["peak"] = {"flops": None, "source": "unknown"}
    if setup.get("error") or "error" in facts:
        reason = setup.get("error") or f"torch does not import: {facts.get('error')}"
        report["stages"] = {s.name: {"status": "fail", "reason": reason} for s in STAGES}
        return finish(1)
    if not args.cpu and not facts.get("cuda"):
        reason = "no CUDA GPU visible (use --cpu for the toy version)"
        report["stages"] = {s.name: {"status": "fail", "reason": reason} for s in STAGES}
        return finish(1)

    if args.cpu:
        peak, source = matmul_peak_flops(size=512, seconds=1.0), "this CPU's measured fp32 matmul"
    else:
        peak, source = peak_for(facts.get("gpu"))
    report["peak"] = {"flops": peak, "source": source}
    model_dir = work / "model"
    built = python_child(BUILD, json.dumps(size.model), str(model_dir), env=env, timeout=600)
    params = tagged(built.stdout, "PARAMS")
    if built.returncode != 0 or not params:
        reason = f"model build failed: {built.stderr[-1500:]}"
        report["stages"] = {s.name: {"status": "fail", "reason": reason} for s in STAGES}
        return finish(1)
    report["model"]["params"] = params
    from grpolab.demo.addition import make_addition_rows

    prompts = make_addition_rows(size.samples, seed=0, split="train")
    ctx = Context(
        cpu=args.cpu,
        size=size,
        work=work,
        env=env,
        model_dir=model_dir,
        params=params,
        prompt_tokens=statistics.mean(len(r["prompt"]) for r in prompts),  # one token per character
        machine=facts,
        peak_flops=peak,
        peak_source=source,
        deadline=t0 + budget,
        launch=args.launch,
    )
    print(f"model built: {params / 1e6:.1f}M parameters; {remaining(ctx):.0f} s of budget left", flush=True)

    for stage in STAGES:
        started = time.monotonic()
        timeout = min(stage.timeout_cpu if args.cpu else stage.timeout_gpu, remaining(ctx) - 5)
        if only and stage.name not in only:
            result = {"status": "skip", "reason": "not in --only"}
        elif args.cpu and stage.needs_gpu:
            result = {"status": "skip", "reason": "needs a GPU"}
        elif args.cpu and stage.cpu_skip:
            result = {"status": "skip", "reason": stage.cpu_skip}
        elif stage.needs_vllm and not facts.get("vllm"):
            result = {"status": "skip", "reason": "vLLM is not importable here (pip install 'trl[vllm]')"}
        elif timeout < MIN_STAGE_S["cpu" if args.cpu else "gpu"]:
            result = {"status": "skip", "reason": f"time budget: {max(remaining(ctx), 0):.0f} s left"}
        else:
            print(f"stage {stage.name}: {stage.what} (timeout {timeout:.0f} s)", flush=True)
            try:
                result = RUNNERS.get(stage.name, stage_backend)(ctx, stage, timeout)
            except Exception as exc:  # one broken stage must not cost the others their turn
                result = {"status": "fail", "reason": f"{type(exc).__name__}: {exc}"}
            if result.get("status") == "fail" and result.get("log"):
                result["log_tail"] = log_tail(Path(result["log"]))
            if stage.name == "gpu1":
                result["train_runtime_per_step"] = train_runtime_per_step(result)
        result["what"] = stage.what
        result["stage_s"] = round(time.monotonic() - started, 1)
        ctx.results[stage.name] = result
        report["stages"][stage.name] = {k: v for k, v in result.items() if k != "trl_args"}
        print(f"  -> {result['status']}" + (f": {result['reason']}" if result.get("reason") else ""), flush=True)
        report["elapsed_s"] = round(time.monotonic() - t0, 1)
        write_report(ctx, report, out)  # a call cut short still leaves every finished stage on disk
    failed = [n for n, r in report["stages"].items() if r["status"] == "fail"]
    return finish(1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
