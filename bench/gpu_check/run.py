"""The prepared GPU check: grpolab trained for real on one GPU, in one call of under 7 minutes.

    python3 bench/gpu_check/run.py [--budget 390] [--out bench/results/gpu_check.json] [--only a,b]
    python3 bench/gpu_check/run.py --cpu          # the same stages at toy size on CPU (tests)
    python3 bench/gpu_check/run.py --pins         # the wheels it carries: name==version, one a line

It builds a random-init Qwen2-style model locally (hidden 896, 24 layers, 14 query / 2 KV heads,
intermediate 4864, Qwen2.5's 151936-entry vocabulary over the demo's character tokenizer, tied
embeddings: ~0.49B parameters; nothing is downloaded), then runs the stages below in the order of
what a result is worth, each in fresh processes with its own timeout, while the budget lasts:

  gpu1           1 GPU, grpolab in its own process, model.dtype auto: fp32 weights loaded and saved
  plain_trl      gpu1's run as the plain TRL script: the overhead ratio (step-2-onward medians)
  mfu            loss + backward alone at two shapes (CUDA events): fraction of the bf16 peak
  zero3_self     grpolab's own launch of cluster.backend deepspeed, zero_stage 3: partitioned at load
  seed_cluster   the spec's command, python training/grpo_training.py --model M --mode cluster
  fsdp2          FSDP2
  lora_zero3     LoRA under ZeRO-3: the adapter and the merged model, tensor by tensor
  sigterm_zero2  SIGTERM during a ZeRO-2 run: checkpoint, status interrupted, then --resume
  bf16_vs_fp32   the same run with bf16 and with fp32 weights: fraction of weights changed

Every training stage reports `grpolab config explain --memory`'s plan next to the measured
allocated and reserved peaks. A stage that overruns is killed with every process it started
(torchrun's ranks sit in sessions of their own), and the free GPU memory is logged before each
stage. The setup (wheel install, facts, model build) counts against the budget, stops at the
first package that does not import, and the report is written before the model build.

On a machine without trl, deepspeed, datasets, pydantic or ruamel.yaml, the script first installs
the wheels in .carry/wheels (bench/gpu_check/build_wheels.sh makes them; README.md says how to
carry them) into a private folder that only it and its child processes see.
"""

from __future__ import annotations

import argparse
import hashlib
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
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

PRESETS = REPO / "configs" / "accelerate"
PROBE_SITE = HERE / "probe_site"
REQUIREMENTS = HERE / "requirements.txt"
LOCK = REPO / "requirements.lock"
DEFAULT_WHEELS = REPO / ".carry" / "wheels"

# Packages of requirements.lock that the GPU machine keeps from its image, not from the lock, and
# why. The report lists them next to the versions found there.
FROM_IMAGE = {
    # 2.x needs httpx2, hf-xet and click >= 8.4.2, none of which the image has; every carried
    # wheel accepts the image's 1.33 (transformers 5.24 and datasets 5.2 want >=1.31,<3).
    "huggingface-hub": "the lock's version needs httpx2, hf-xet and click, which the image lacks",
    # Compiled; the image's 0.23.2 is inside transformers 5.24's range (>=0.23.1,<0.24).
    "tokenizers": "compiled, and the image's copy is inside transformers' range",
    "torch": "the image's CUDA build (the lock pins the CPU wheel)",
}

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
    max_position_embeddings=512,  # the seed's cluster preset generates up to 256 tokens
    rope_theta=1_000_000.0,  # the GPU size passes it; the CPU rehearsal must too
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
    mfu_shapes: tuple
    mfu_iters: tuple  # (warm-up, timed)
    matmul_s: float
    setup: dict  # timeout per setup step, seconds


GPU_SIZE = Size(
    QWEN2_05B,
    steps=5,
    per_device=16,
    generations=8,
    completion=64,
    samples=256,
    sigterm_steps=200,
    mfu_shapes=((16, 70), (32, 512)),  # 64 x 512 would not fit 80 GB (mfu.py)
    mfu_iters=(3, 10),
    matmul_s=5.0,
    setup={"install": 40, "facts": 60, "build": 60},  # facts: cold imports of torch, trl, deepspeed
)
CPU_SIZE = Size(
    QWEN2_TOY,
    steps=2,
    per_device=2,
    generations=2,
    completion=4,
    samples=16,
    sigterm_steps=400,
    mfu_shapes=((2, 16), (4, 32)),
    mfu_iters=(1, 3),
    matmul_s=0.5,
    # facts: the imports, then the first JIT build of DeepSpeed's CPU comm op (DS_OPS: 4 min 22 s
    # on a fresh 2-core machine, and again whenever another checkout's DeepSpeed rebuilt it)
    setup={"install": 120, "facts": 420, "build": 120},
)
DEFAULT_BUDGET_S = {"gpu": 390.0, "cpu": 2700.0}  # CPU: room for a shared 2-core machine
START_FRACTION = 0.8  # a stage starts only with at least this share of its timeout left
KILL_GRACE_S = 5.0  # SIGTERM to SIGKILL for a stage that overran: its result is already lost
STAGE_MARK = "GPU_CHECK_STAGE"  # in every stage process's environment: finds ranks in other sessions


@dataclass(frozen=True)
class Stage:
    name: str
    what: str  # what a pass proves
    timeout_gpu: int  # seconds on the GPU, process start and model load included
    timeout_cpu: int
    runner: str  # key of RUNNERS
    preset: str | None = None  # accelerate preset of a launched stage; None = one process
    engine: tuple = ("NO", None, None)  # (distributed type, ZeRO stage, FSDP version) every rank must show
    sets: tuple = ()  # --set KEY=VALUE for this stage
    cpu_skip: str | None = None  # why the toy CPU version skips it
    trains: bool = True  # has a memory plan

    def timeout(self, cpu: bool) -> int:
        return self.timeout_cpu if cpu else self.timeout_gpu


DEEPSPEED_3 = ("cluster.backend=deepspeed", "cluster.zero_stage=3")
STAGES = (
    Stage("gpu1", "1 GPU in one process, model.dtype auto: trains; fp32 weights loaded and saved", 75, 240, "gpu1"),
    Stage(
        "plain_trl",
        "gpu1's run as the plain TRL script, right after it: grpolab's overhead (step-2+ medians)",
        60,
        180,
        "plain",
    ),
    Stage(
        "mfu",
        "forward + log-softmax gather + backward alone, bf16 autocast: fraction of the bf16 peak",
        50,
        120,
        "mfu",
        trains=False,
    ),
    Stage(
        "zero3_self",
        "grpolab's own launch, cluster.backend deepspeed, zero_stage 3, reference model: policy partitioned at load",
        100,
        300,
        "zero3_self",
        preset="zero3.yaml",
        engine=("DEEPSPEED", 3, None),
        sets=("grpo.beta=0.04", *DEEPSPEED_3),
    ),
    Stage(
        "seed_cluster",
        "the spec's command: python training/grpo_training.py --model <built> --mode cluster (3 steps)",
        90,
        240,
        "seed",
    ),
    Stage(
        "fsdp2",
        "FSDP2 through accelerate, cluster.backend fsdp",
        75,
        0,
        "backend",
        preset="fsdp2.yaml",
        engine=("FSDP", None, 2),
        sets=("cluster.backend=fsdp",),
        cpu_skip="accelerate 1.15 applies FSDP only to GPU-like distributed types (state.py:986-1013): "
        "on CPU ranks it silently trains DDP (tests/launch/test_execute_backends.py shows it)",
    ),
    Stage(
        "lora_zero3",
        "LoRA (r 16, all-linear) under ZeRO-3: adapter saved whole, merge equals base + B@A",
        90,
        300,
        "backend",
        preset="zero3.yaml",
        engine=("DEEPSPEED", 3, None),
        sets=(
            *DEEPSPEED_3,
            "model.lora.enabled=true",
            "model.lora.r=16",
            "model.lora.alpha=32",  # lora_merge_check's alpha / r
            "model.lora.dropout=0.0",
            "training.learning_rate=1e-4",
        ),
    ),
    Stage(
        "sigterm_zero2",
        "SIGTERM after a ZeRO-2 step: checkpoint within the 30 s grace, status interrupted; --resume goes on",
        150,
        360,
        "sigterm",
        preset="zero2.yaml",
        engine=("DEEPSPEED", 2, None),
        sets=("cluster.backend=deepspeed", "cluster.zero_stage=2"),
    ),
    Stage(
        "bf16_vs_fp32",
        "the same run with bf16 and with fp32 weights (lr 1e-6, constant): fraction of weights changed",
        120,
        300,
        "contrast",
    ),
)
STAGE_NAMES = [s.name for s in STAGES]


def stage_plan(cpu: bool, budget: float) -> dict:
    """Every stage with its timeout, and which of them fit this budget after the setup even if
    every one ran to its timeout (the others run only when earlier ones finish early)."""
    size = CPU_SIZE if cpu else GPU_SIZE
    setup = sum(size.setup.values())
    used, stages = setup, []
    for s in STAGES:
        runs = not (cpu and s.cpu_skip)
        fits = runs and used + s.timeout(cpu) <= budget
        used += s.timeout(cpu) if fits else 0
        stages.append({"stage": s.name, "timeout_s": s.timeout(cpu) if runs else 0, "fits_budget": fits})
    later = [s["stage"] for s in stages if s["timeout_s"] and not s["fits_budget"]]
    return {"budget_s": budget, "setup_s": setup, "worst_case_s": used, "stages": stages, "beyond_worst_case": later}


# ----------------------------------------------------------------------------- pins
def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_versions(path: Path = LOCK) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[normalize(name)] = version.strip()
    return out


def carried(path: Path = REQUIREMENTS) -> dict[str, tuple[str | None, str | None]]:
    """requirements.txt: name -> (override version or None, its reason or None)."""
    out = {}
    for raw in path.read_text().splitlines():
        line, _, why = raw.partition("#")
        line = line.strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        out[normalize(name)] = (version.strip() or None, why.strip() or None)
    return out


def pins(requirements: Path = REQUIREMENTS, lock: Path = LOCK) -> dict[str, str]:
    """The carried wheels: the lock's version of each, unless requirements.txt overrides it."""
    locked, out = lock_versions(lock), {}
    for name, (override, _) in carried(requirements).items():
        if override is None and name not in locked:
            raise ValueError(f"{name}: not in {lock.name}; pin it in {requirements.name} as {name}==X  # why")
        out[name] = override or locked[name]
    return out


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def bootstrap(wheels: Path, site: Path, allow_install: bool, timeout: float) -> dict:
    """Install the pinned wheels into `site` when this Python lacks any of them (or has another
    version): the children get `site` first on PYTHONPATH, so they import exactly the pins."""
    try:
        wanted = pins()
    except ValueError as exc:
        return {"wanted": {}, "error": str(exc)}
    differ = {n: _installed(n) for n, v in wanted.items() if _installed(n) != v}
    locked = lock_versions()
    from_image = {n: {"locked": locked.get(n), "here": _installed(n), "why": why} for n, why in FROM_IMAGE.items()}
    info = {"wanted": wanted, "differ_here": differ, "from_image": from_image, "installed_from": None, "site": None}
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
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        info["error"] = f"pip install of the wheels took over {timeout:.0f} s"
        return info
    info.update(installed_from=str(wheels), site=str(site), install_s=round(time.monotonic() - started, 1))
    if done.returncode != 0:
        info["error"] = f"pip install of the wheels failed: {done.stderr[-2000:]}"
    return info


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
    deadline: float
    results: dict = field(default_factory=dict)


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
        TORCH_EXTENSIONS_DIR=str(extensions_dir(env, site)),
    )
    for key in ("GRPOLAB_RUN_DIR", "WORLD_SIZE", "RANK", "LOCAL_RANK", "WANDB_API_KEY", STAGE_MARK):
        env.pop(key, None)
    if cpu:
        env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"), CUDA_VISIBLE_DEVICES="")
    return env


# What a stage imports, in the order a failure is cheapest to report: (distribution, module[:attr]).
IMPORTS = (
    ("torch", "torch"),
    ("transformers", "transformers:Qwen2ForCausalLM"),
    ("accelerate", "accelerate"),
    ("peft", "peft"),
    ("datasets", "datasets"),
    ("trl", "trl:GRPOTrainer"),
    ("deepspeed", "deepspeed"),
    ("pydantic", "pydantic"),
    ("ruamel.yaml", "ruamel.yaml"),
    ("grpolab", "grpolab.config:GRPOConfigLoader"),
    ("grpolab", "grpolab.train.pipeline:run_from_args"),
)


# DeepSpeed ops that a DeepSpeed stage loads, built in the setup (facts.py), timed and bounded by
# the facts' timeout, so that no stage pays a JIT build inside its own timeout (a fresh 2-core
# machine took 4 min 22 s for this one). deepspeed.comm loads its shared-memory op at init on
# DeepSpeed's CPU accelerator; the CUDA accelerator has none (NCCL). No optimizer op either:
# grpolab's DeepSpeed JSON and the accelerate presets name no optimizer and no offload, so ZeRO
# steps transformers' torch AdamW, not DeepSpeed's fused_adam or cpu_adam. Every stage's probes
# list the ops its processes loaded; one the setup did not build is named in the stage's note.
DS_OPS = ("ShareMemCommBuilder",)


def ops_to_build(stages, cpu: bool, only: set | None) -> list[str]:
    """DS_OPS when a DeepSpeed stage will run, else none (a build costs minutes on a fresh machine)."""
    runs = [s for s in stages if not (only and s.name not in only) and not (cpu and s.cpu_skip)]
    return list(DS_OPS) if any(s.engine[0] == "DEEPSPEED" for s in runs) else []


def import_failure(facts: dict) -> str | None:
    """'trl 1.16.0 (wanted 1.16.0) does not import: ImportError: ...' for a stopped setup."""
    e = facts.get("import_error")
    if not e:
        return None
    found = e["found"] or "not installed"
    wanted = f", wanted {e['wanted']}" if e.get("wanted") else ""
    return f"{e['package']} {found}{wanted} does not import ({e['import']}): {e['reason']}"


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


def python_child(args: list[str], *, env: dict, timeout: float) -> tuple[int | None, str, str]:
    """(exit code or None on a timeout, stdout, stderr) of one bounded setup child."""
    try:
        done = subprocess.run(
            [sys.executable, *args], env=env, capture_output=True, text=True, timeout=max(1.0, timeout), cwd=REPO
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return None, out, f"timed out after {timeout:.0f} s"
    return done.returncode, done.stdout, done.stderr


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


def remaining(ctx: Context) -> float:
    return ctx.deadline - time.monotonic()


# ----------------------------------------------------------------------------- processes
def start(cmd: list[str], env: dict, log: Path, mark: str) -> subprocess.Popen:
    """A stage process in a session of its own, marked in its environment: every descendant
    inherits the mark, including torchrun's ranks, which start sessions of their own."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "w")
    handle.write("$ " + " ".join(cmd) + "\n")
    handle.flush()
    env = {**env, STAGE_MARK: mark}
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stage_processes(mark: str, root: int | None = None) -> list:
    """The root's descendants plus every process whose environment carries `mark` (a rank whose
    launcher already died has been re-parented, and only the mark still ties it to the stage)."""
    import psutil

    found = {}
    try:
        if root is not None:
            parent = psutil.Process(root)
            found = {p.pid: p for p in [parent, *parent.children(recursive=True)]}
    except psutil.Error:
        pass
    for p in psutil.process_iter():
        try:
            if p.pid not in found and p.environ().get(STAGE_MARK) == mark:
                found[p.pid] = p
        except psutil.Error:  # gone, or another user's: neither is ours
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def kill_all(procs: list, grace: float) -> int:
    """SIGTERM, then SIGKILL whatever is left after `grace` seconds; how many there were."""
    import psutil

    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=5)
    return len(procs)


def wait(proc: subprocess.Popen, timeout: float, mark: str) -> tuple[int | None, bool]:
    """The exit code, and whether the stage overran: then it and all its ranks are killed."""
    try:
        return proc.wait(timeout=max(1.0, timeout)), False
    except subprocess.TimeoutExpired:
        kill_all(stage_processes(mark, proc.pid), KILL_GRACE_S)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return proc.returncode, True


def extensions_dir(env: dict, site: Path | None) -> Path:
    """Where the check's processes JIT-build ops (torch's cpp_extension, DeepSpeed's included): the
    caller's TORCH_EXTENSIONS_DIR, else a folder of the check's own for this DeepSpeed copy (the
    carried site, or this Python's). torch's default folder is shared by every venv of a Python
    version, and a build from another checkout's DeepSpeed (other paths in its build file) makes
    the next use here rebuild it: minutes on CPU, inside whatever stage came first."""
    if env.get("TORCH_EXTENSIONS_DIR"):
        return Path(env["TORCH_EXTENSIONS_DIR"])
    owner = hashlib.sha1(str(site or sys.prefix).encode()).hexdigest()[:10]
    return Path.home() / ".cache" / "torch_extensions" / f"gpu_check-{owner}"


def clear_build_locks(since: float, root: Path) -> list[str]:
    """The `lock` files of JIT op builds started since `since` (a wall-clock time). A stage killed
    in the middle of a build leaves its lock behind, and every later process that needs the op
    then waits on it forever (torch's FileBaton): the next stage would hang too. Called only after
    a stage's processes are all dead, so nothing of this check still holds such a lock."""
    removed = []
    for lock in root.glob("*/*/lock"):
        try:
            if lock.stat().st_mtime >= since:
                lock.unlink()
                removed.append(str(lock))
        except OSError:
            continue
    return removed


def gpu_now() -> dict:
    """Free memory and the processes on the GPU, from nvidia-smi (the parent never touches CUDA,
    so it holds none of it)."""
    queries = {
        "gpu": ["--query-gpu=memory.free,memory.used", "--format=csv,noheader,nounits"],
        "apps": ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
    }
    out: dict = {}
    for key, args in queries.items():
        try:
            done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=15)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"error": f"nvidia-smi: {exc}"}
        rows = [[c.strip() for c in ln.split(",")] for ln in done.stdout.strip().splitlines() if ln.strip()]
        if key == "gpu" and rows:
            out["free_mib"], out["used_mib"] = float(rows[0][0]), float(rows[0][1])
        elif key == "apps":
            out["apps"] = [{"pid": r[0], "used_mib": r[1]} for r in rows]
    return out


# ----------------------------------------------------------------------------- records and timing
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


def median_after_first(values: list[float]) -> float | None:
    """The median from the second value on: step 1 pays the CUDA start and Triton compiles, and
    only the first process on the machine pays them, so it would bias any comparison."""
    return statistics.median(values[1:]) if len(values) >= 2 else None


def timing(records: list[dict]) -> dict:
    """Optimizer-step wall time (median gap between consecutive step records, so step 1 is left
    out; generation included), tokens per second over the same steps, and TRL's own `step_time`
    from step 2 on (it wraps training_step, which generates too: not the backward pass alone)."""
    steps = [r for r in records if "loss" in r and "time" in r]
    out: dict = {"steps_logged": len(steps)}
    if len(steps) >= 2:
        gaps = [b["time"] - a["time"] for a, b in zip(steps, steps[1:])]
        out["step_time_s"] = statistics.median(gaps)
        tokens = steps[-1].get("num_tokens", 0) - steps[0].get("num_tokens", 0)
        out["tokens_per_s"] = tokens / max(steps[-1]["time"] - steps[0]["time"], 1e-9)
    out["trl_step_times"] = [float(r["step_time"]) for r in steps if "step_time" in r]
    out["trl_step_time_s"] = median_after_first(out["trl_step_times"])
    return out


def overhead_ratio(grpolab_step_times: list[float], plain_step_times: list[float]) -> float | None:
    """grpolab over plain TRL: the same measure on both sides (TRL's step_time), step 1 left out."""
    ours, plain = median_after_first(grpolab_step_times), median_after_first(plain_step_times)
    return ours / plain if ours and plain else None


def console_records(text: str) -> list[dict]:
    """The per-step dicts transformers' console printer writes (the plain script has no metrics file)."""
    records = []
    for match in re.finditer(r"\{'loss'.*?\}", text):
        try:
            records.append({k: float(v) for k, v in json.loads(match.group().replace("'", '"')).items()})
        except (ValueError, json.JSONDecodeError):
            continue
    return records


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


# ----------------------------------------------------------------------------- memory plan
GIB = 2**30


def memory_plan(ctx: Context, mode: str, config: Path | None, sets: tuple) -> dict:
    """What `grpolab config explain --memory` plans for this stage's exact config (the same call,
    in this process: a child per stage would cost an interpreter start each): world 1, vLLM off
    unless it imports, this GPU's memory, the prompts' mean length."""
    from grpolab.config import GRPOConfigLoader
    from grpolab.tune import memory

    overrides = [f"model.name_or_path={ctx.model_dir}", *sets]
    if not ctx.machine.get("vllm"):
        overrides.append("cluster.use_vllm=false")  # `auto` would plan vLLM's share of the GPU
    try:
        cfg = GRPOConfigLoader(mode=mode, config_path=config, overrides=overrides, world_size=1).config
        plan = memory.plan(
            cfg,
            memory.resolve_shape(str(ctx.model_dir)),
            1,
            ctx.machine.get("gpu_memory_gib"),
            round(ctx.prompt_tokens),
        )
    except Exception as exc:  # the measured side still counts without a plan
        return {"plan_error": f"{type(exc).__name__}: {exc}"[:400]}
    d = plan.to_dict()
    return {"plan_total_gib": d["total_gib"], "plan_components_gib": d["components_gib"], "plan_fits": d["fits"]}


def measured_memory(probes: list[dict], plan: dict) -> dict:
    """The largest allocated and reserved peaks of any process of the stage, and each over the plan."""
    out = {}
    for key, probe_key in (("allocated", "peak_gpu_bytes"), ("reserved", "peak_gpu_reserved_bytes")):
        peaks = [p[probe_key] for p in probes if p.get(probe_key)]
        out[f"peak_{key}_gib"] = round(max(peaks) / GIB, 3) if peaks else None
        total = plan.get("plan_total_gib")
        out[f"{key}_over_plan"] = round(out[f"peak_{key}_gib"] / total, 3) if peaks and total else None
    return out


# ----------------------------------------------------------------------------- training stages
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


def launch_kind(ctx: Context, stage: Stage) -> str:
    """local: one process; self: grpolab's own launch; hand: `accelerate launch` of the preset.
    grpolab starts DeepSpeed on GPUs only, so the CPU rehearsal of zero3_self launches by hand
    (DeepSpeed's CPU accelerator), which still shows whether ZeRO-3 partitioned the policy at load."""
    if stage.preset is None:
        return "local"
    return "self" if stage.runner == "zero3_self" and not ctx.cpu else "hand"


def grpolab_cmd(ctx: Context, stage: Stage, train: list[str]) -> list[str]:
    """`train`: the arguments after `python -m grpolab train`."""
    kind = launch_kind(ctx, stage)
    if kind == "local":
        return [sys.executable, "-m", "grpolab", "train", *train, "--mode", "local"]
    if kind == "self":
        return [
            sys.executable,
            "-m",
            "grpolab",
            "train",
            *train,
            "--set",
            "cluster.num_processes=1",
            "--mode",
            "cluster",
        ]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(PRESETS / stage.preset)]
    launch += ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no" if ctx.cpu else "bf16"]
    return [*launch, "-m", "grpolab", "train", *train, "--mode", "cluster"]


def stage_sets(ctx: Context, stage: Stage) -> tuple:
    # grpolab's config refuses cluster.backend deepspeed/fsdp for a CPU run; the hand launch on CPU
    # picks the engine through the accelerate preset alone.
    if ctx.cpu:
        return tuple(s for s in stage.sets if not s.startswith(("cluster.backend=", "cluster.zero_stage=")))
    return stage.sets


def run_process(
    ctx: Context,
    name: str,
    cmd: list[str],
    timeout: float,
    run_dir: Path | None,
    env: dict | None = None,
    sigterm_after_step: int | None = None,
) -> tuple[dict, list[dict]]:
    """Start one stage process, wait for it (killing it and its ranks on an overrun), and read
    back its run directory; (result, probes). With `sigterm_after_step`, the launcher gets
    SIGTERM once that step is logged (what scancel or a preemption delivers to the job step)."""
    probes = ctx.work / "probes" / name
    log = ctx.work / "logs" / f"{name}.log"
    mark = f"{name}-{uuid.uuid4().hex[:8]}"
    started, started_wall = time.monotonic(), time.time()
    env = {**(env or ctx.env), "GPU_CHECK_PROBE_DIR": str(probes)}
    proc = start(cmd, env, log, mark)
    signalled_at = None
    while sigterm_after_step and proc.poll() is None and time.monotonic() - started < timeout:
        if any(r.get("step", 0) >= sigterm_after_step for r in read_records(run_dir) if "loss" in r):
            proc.send_signal(signal.SIGTERM)
            signalled_at = time.monotonic()
            break
        time.sleep(0.5)
    code, timed_out = wait(proc, timeout - (time.monotonic() - started), mark)
    result = {"exit_code": code, "wall_s": round(time.monotonic() - started, 1), "log": str(log)}
    result["command"] = " ".join(cmd[1:])
    if signalled_at is not None:
        result["exit_after_sigterm_s"] = round(time.monotonic() - signalled_at, 1)
    # A rank that outlived a launcher which exited by itself would hold GPU memory into the next stage.
    result["orphans_killed"] = kill_all(stage_processes(mark), KILL_GRACE_S)
    if timed_out:
        result["error"] = f"timed out after {timeout:.0f} s: the stage and all its processes were killed"
        result["build_locks_removed"] = clear_build_locks(started_wall, Path(env["TORCH_EXTENSIONS_DIR"]))
    if run_dir is not None:  # a training run (the micro-benchmark has none)
        read_run(ctx, run_dir, log, result)
    probe_list = read_probes(probes)
    result["engines"] = [p["engine"] for p in probe_list if "engine" in p]
    result["cpu_s"] = round(sum(p.get("cpu_s", 0.0) for p in probe_list), 1)  # the stage's cost on a loaded machine
    result["ds_ops_loaded"] = sorted({op for p in probe_list for op in p.get("ds_ops", [])})
    prebuilt = {o.get("op") for o in ctx.machine.get("ds_ops", {}).values()}
    result["ds_ops_built_in_stage"] = sorted(set(result["ds_ops_loaded"]) - prebuilt)
    return result, probe_list


def read_run(ctx: Context, run_dir: Path, log: Path, result: dict) -> None:
    info_file = run_dir / "run_info.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    result.update(status_in_run=info.get("status"), global_step=info.get("global_step"), run_error=info.get("error"))
    result["policy_partitioned_at_load"] = info.get("policy_partitioned_at_load")
    result.update(timing(read_records(run_dir)))
    text = log.read_text(errors="replace") if log.exists() else ""
    # The training plan's device line: "...; precision bf16 autocast; weights bfloat16; generation ...".
    dtype = re.search(r"; precision [^;\n]*; weights (\w+);", text)
    result["policy_weights"] = dtype.group(1) if dtype else None
    errors = [ln for ln in text.splitlines() if ln.startswith("error")]
    if errors:
        result["log_error"] = errors[-1][:600]  # grpolab's one-line error (a config refused before training)
    if (run_dir / "model").is_dir():
        result.update(weights_changed(ctx.model_dir, run_dir / "model"))
    result["run_dir"] = str(run_dir)
    result["trl_args"] = info.get("trl_args")


def run_training(
    ctx: Context,
    stage: Stage,
    name: str,
    sets: tuple,
    timeout: float,
    resume: Path | None = None,
    sigterm_after_step: int | None = None,
) -> dict:
    """One grpolab training of `stage` from the check's config plus `sets` (or `--resume` of a
    run), with its memory plan."""
    out_dir = ctx.work / "runs" / name
    config = ctx.work / f"{name}.json"
    config.write_text(json.dumps(base_config(ctx, out_dir), indent=1))
    sets = (*stage_sets(ctx, stage), *sets)
    train = ["--resume", str(resume), "--force"] if resume else ["--config", str(config), "--run-name", name]
    for item in sets:
        train += ["--set", item]
    mode = "local" if stage.preset is None else "cluster"
    plan = memory_plan(ctx, mode, config, sets)
    cmd = grpolab_cmd(ctx, stage, train)
    result, probes = run_process(ctx, name, cmd, timeout, resume or out_dir / name, None, sigterm_after_step)
    if (problem := engine_problem(stage, probes)) and "error" not in result:
        result["engine_error"] = problem
    result.update(plan, **measured_memory(probes, plan))
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


def fail_unless(r: dict, ok: bool, reason: str) -> None:
    if r["status"] == "pass" and not ok:
        r["status"], r["reason"] = "fail", reason


def stage_gpu1(ctx: Context, stage: Stage, timeout: float) -> dict:
    """`model.dtype: auto` means fp32 weights under bf16 autocast: bf16 weights would drop the
    small AdamW updates (bf16_vs_fp32 shows how many)."""
    r = run_training(ctx, stage, stage.name, (), timeout)
    r["status"], r["reason"] = verdict(r)
    fail_unless(r, r.get("policy_weights") == "float32", f"policy weights {r.get('policy_weights')}, not float32")
    fail_unless(r, r.get("saved_dtype") == "float32", f"saved model in {r.get('saved_dtype')}, not float32")
    return r


def stage_backend(ctx: Context, stage: Stage, timeout: float) -> dict:
    r = run_training(ctx, stage, stage.name, (), timeout)
    r["status"], r["reason"] = verdict(r)
    if "model.lora.enabled=true" in stage.sets and r["status"] == "pass":
        r.update(lora_merge_check(ctx.model_dir, Path(r["run_dir"]), alpha=32, r=16))
        why = r.get("lora_error") or f"merged weights off by {r.get('lora_error_vs_tol', 0):.1f}x tolerance"
        fail_unless(r, r["lora_ok"], why)
    return r


def stage_zero3_self(ctx: Context, stage: Stage, timeout: float) -> dict:
    """One rank's ZeRO-3 partition is the whole model, so the proof of sharding is that the policy
    was built inside zero.Init (its parameters carry DeepSpeed ids when training starts)."""
    r = stage_backend(ctx, stage, timeout)
    fail_unless(r, r.get("policy_partitioned_at_load") is True, "the policy was not partitioned at load (zero.Init)")
    return r


def stage_seed(ctx: Context, stage: Stage, timeout: float) -> dict:
    """The spec's own command with the cluster preset as it ships (checkpointing on, beta 0.01 with
    a reference model, 256 completion tokens, report_to wandb), only shortened; wandb is disabled
    because the image has none."""
    out_dir = ctx.work / "runs" / stage.name
    sets = ("training.max_steps=3", "data.max_samples=64", "training.logging_steps=1")
    cmd = [sys.executable, str(REPO / "training" / "grpo_training.py"), "--model", str(ctx.model_dir)]
    cmd += ["--mode", "cluster", *[a for s in sets for a in ("--set", s)]]
    cmd += ["--output-dir", str(out_dir), "--run-name", stage.name]
    plan = memory_plan(ctx, "cluster", None, sets)
    env = {**ctx.env, "WANDB_MODE": "disabled"}
    r, probes = run_process(ctx, stage.name, cmd, timeout, out_dir / stage.name, env=env)
    r.update(plan, **measured_memory(probes, plan))
    r["status"], r["reason"] = verdict(r)
    if r["status"] == "fail" and r["reason"] == "the final model equals the initial one (nothing trained)":
        # numeric_match alone can score every random completion 0: no update is a valid outcome here.
        r["status"], r["reason"] = "pass", None
    fail_unless(r, r.get("global_step") == 3, f"global step {r.get('global_step')}, expected 3")
    return r


def stage_plain(ctx: Context, stage: Stage, timeout: float) -> dict:
    """bench/plain_trl_grpo.py given gpu1's exact GRPOConfig arguments (run_info.json) and the
    policy dtype gpu1 loaded, on the same model and prompts, right after gpu1 (so both pay a warm
    machine from step 2 on): grpolab's overhead per step."""
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
    cmd = [sys.executable, str(REPO / "bench" / "plain_trl_grpo.py"), str(work / "grpo_config.json")]
    cmd += [str(ctx.model_dir), str(work / "data.jsonl")]
    r, probes = run_process(ctx, stage.name, cmd, timeout, work / "out")
    plan = {k: ref.get(k) for k in ("plan_total_gib", "plan_components_gib", "plan_fits")}  # gpu1's run
    r.update(plan, **measured_memory(probes, plan))
    text = Path(r["log"]).read_text(errors="replace")
    result = tagged(text, "RESULT")
    if r.get("error") or r["exit_code"] != 0 or not result:
        r["status"], r["reason"] = "fail", r.get("error") or f"exit code {r['exit_code']}"
        return r
    r["trl_step_times"] = [x["step_time"] for x in console_records(text) if "step_time" in x]
    r["trl_step_time_s"] = median_after_first(r["trl_step_times"])
    r["gpu1_trl_step_time_s"] = ref.get("trl_step_time_s")
    r["overhead_ratio"] = overhead_ratio(ref.get("trl_step_times", []), r["trl_step_times"])
    r["status"], r["reason"] = "pass", None
    fail_unless(r, r["overhead_ratio"] is not None, "no step-2+ step_time on one side (both need 2+ logged steps)")
    return r


def stage_mfu(ctx: Context, stage: Stage, timeout: float) -> dict:
    spec = {"shapes": ctx.size.mfu_shapes, "warmup": ctx.size.mfu_iters[0], "iters": ctx.size.mfu_iters[1]}
    spec["matmul_s"] = ctx.size.matmul_s
    cmd = [sys.executable, str(HERE / "mfu.py"), str(ctx.model_dir), json.dumps(spec)]
    r, _ = run_process(ctx, stage.name, cmd, timeout, None)
    found = tagged(Path(r["log"]).read_text(errors="replace"), "MFU")
    if r.get("error") or r["exit_code"] != 0 or not found:
        r["status"], r["reason"] = "fail", r.get("error") or f"exit code {r['exit_code']}"
        return r
    peak, source = peak_for(ctx.machine.get("gpu"))
    for shape in found["shapes"]:
        if "achieved_tflops" in shape:
            shape["fraction_of_datasheet_peak"] = shape["achieved_tflops"] * 1e12 / peak if peak else None
    r.update(found, datasheet_peak_flops=peak, datasheet_source=source, status="pass", reason=None)
    errors = [f"{s['batch']}x{s['sequence']}: {s['error']}" for s in found["shapes"] if "error" in s]
    fail_unless(r, len(errors) < len(found["shapes"]), "; ".join(errors))
    return r


def checkpoint_facts(checkpoint: Path, params: int) -> dict:
    """Its size (it must be on disk within torchrun's 30 s SIGTERM grace) and the optimizer state
    per parameter: ~12 bytes is an fp32 master copy plus AdamW's two fp32 moments."""
    files = [p for p in checkpoint.rglob("*") if p.is_file()]
    optim = sum(p.stat().st_size for p in files if "optim_states" in p.name)
    return {
        "checkpoint_mib": round(sum(p.stat().st_size for p in files) / 2**20, 1),
        "optimizer_bytes_per_param": round(optim / params, 2) if optim else None,
    }


def stage_sigterm(ctx: Context, stage: Stage, timeout: float) -> dict:
    """SIGTERM to the launcher once step 1 is logged, then `--resume` of the same run for one more
    step. The first part gets 60% of the timeout: the resume loads the checkpoint and saves again."""
    started = time.monotonic()
    steps = (f"training.max_steps={ctx.size.sigterm_steps}",)
    r = run_training(ctx, stage, stage.name, steps, timeout * 0.6, sigterm_after_step=1)
    r["status"], r["reason"] = verdict(r, expect_status="interrupted")
    checkpoints = sorted(Path(r["run_dir"]).glob("checkpoint-*"), key=lambda p: int(p.name.rpartition("-")[2]))
    r["checkpoints"] = [c.name for c in checkpoints]
    fail_unless(r, r.get("exit_after_sigterm_s") is not None, "the run ended before step 1 was logged; no SIGTERM")
    fail_unless(r, bool(checkpoints), "status interrupted but no checkpoint-N was written")
    if r["status"] != "pass":
        return r
    r.update(checkpoint_facts(checkpoints[-1], ctx.params))
    step = int(checkpoints[-1].name.rpartition("-")[2])
    left = timeout - (time.monotonic() - started)
    more = (f"training.max_steps={step + 1}",)
    resumed = run_training(ctx, stage, f"{stage.name}_resume", more, left, resume=Path(r["run_dir"]))
    r["resume"] = {k: resumed.get(k) for k in ("exit_code", "wall_s", "status_in_run", "global_step", "error")}
    r["resume"]["status"], r["resume"]["reason"] = verdict(resumed)
    fail_unless(r, r["resume"]["status"] == "pass", f"--resume: {r['resume']['reason']}")
    fail_unless(r, resumed.get("global_step") == step + 1, f"--resume ended at step {resumed.get('global_step')}")
    return r


def stage_contrast(ctx: Context, stage: Stage, timeout: float) -> dict:
    """bf16 weights (AdamW straight on bf16, no fp32 master copy) vs fp32 weights with bf16
    autocast (TRL's default), same small constant learning rate: how many updates bf16 drops."""
    common = ("training.learning_rate=1e-6", "training.lr_scheduler_type=constant")
    out: dict = {"arms": {}}
    started = time.monotonic()
    for arm, dtype in (("bf16_weights", "bfloat16"), ("fp32_weights", "float32")):
        left = timeout / 2 if arm == "bf16_weights" else timeout - (time.monotonic() - started)
        r = run_training(
            ctx, stage, f"{stage.name}_{arm}", (*common, f"model.dtype={dtype}"), min(left, remaining(ctx))
        )
        r["status"], r["reason"] = verdict(r)
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
    for key in SUMMARY_KEYS:
        out[key] = {k: v.get(key) for k, v in arms.items()}
    return out


RUNNERS = {
    "gpu1": stage_gpu1,
    "plain": stage_plain,
    "mfu": stage_mfu,
    "zero3_self": stage_zero3_self,
    "seed": stage_seed,
    "backend": stage_backend,
    "sigterm": stage_sigterm,
    "contrast": stage_contrast,
}


# ----------------------------------------------------------------------------- report
SUMMARY_KEYS = (
    "step_time_s",
    "trl_step_time_s",
    "tokens_per_s",
    "plan_total_gib",
    "peak_allocated_gib",
    "peak_reserved_gib",
    "reserved_over_plan",
    "weights_changed",
)
HEADERS = ("step s", "TRL step s", "tokens/s", "plan GiB", "alloc GiB", "reserved GiB", "reserved/plan", "changed")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " / ".join(_cell(v) for v in value.values())
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def stage_note(name: str, r: dict) -> str:
    built = r.get("ds_ops_built_in_stage")  # its timeout paid a JIT build: the op belongs in DS_OPS
    jit = f"DeepSpeed ops not built in setup: {', '.join(built)}" if built else ""
    return "; ".join(filter(None, (_finding(name, r), jit)))


def _finding(name: str, r: dict) -> str:
    if r.get("reason"):
        return r["reason"]
    if name == "plain_trl" and r.get("overhead_ratio"):
        return f"grpolab/plain TRL step_time (steps 2+) {r['overhead_ratio']:.2f}"
    if name == "mfu" and r.get("shapes"):
        parts = []
        for s in r["shapes"]:
            if "error" in s:
                parts.append(f"{s['batch']}x{s['sequence']}: {s['error'][:60]}")
                continue
            of_peak = s.get("fraction_of_datasheet_peak")
            peak = f"{of_peak:.1%} of datasheet, " if of_peak else ""
            parts.append(f"{s['batch']}x{s['sequence']}: {peak}{s['fraction_of_measured_matmul']:.1%} of matmul")
        return "; ".join(parts)
    if name == "sigterm_zero2" and r.get("checkpoint_mib") is not None:
        return (
            f"checkpoint {r['checkpoint_mib']:.4g} MiB, exit {r.get('exit_after_sigterm_s')} s after SIGTERM "
            f"(grace 30 s), optimizer {r.get('optimizer_bytes_per_param')} B/param; resumed to step "
            f"{r.get('resume', {}).get('global_step')}"
        )
    if name == "zero3_self" and r.get("policy_partitioned_at_load") is not None:
        return f"partitioned at load: {r['policy_partitioned_at_load']}"
    return r.get("finding") or ""


def markdown(report: dict) -> str:
    m = report.get("machine", {})
    v = m.get("versions", {})
    lines = [
        f"# GPU check ({report['mode']})",
        "",
        f"{m.get('gpu') or 'CPU'}; torch {m.get('torch')}, transformers {v.get('transformers')}, trl {v.get('trl')}, "
        f"deepspeed {v.get('deepspeed')}, huggingface-hub {v.get('huggingface-hub')}; model "
        f"{report['model']['params'] / 1e6:.3g}M parameters; {report.get('elapsed_s', 0):.0f} s of a "
        f"{report['budget_s']:.0f} s budget (setup {report.get('setup_s', '-')} s).",
        "",
        "| stage | status | timeout s | took s | " + " | ".join(HEADERS) + " | note |",
        "|---" * (len(HEADERS) + 5) + "|",
    ]
    timeouts = {s["stage"]: s["timeout_s"] for s in report["plan"]["stages"]}
    for name in STAGE_NAMES:
        r = report["stages"].get(name, {})
        cells = [_cell(r.get(k)) for k in SUMMARY_KEYS]
        note = stage_note(name, r).replace("|", "/").replace("\n", " ")
        row = [name, r.get("status", "-"), str(timeouts[name]), _cell(r.get("stage_s")), *cells, note[:300]]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "step s: median wall gap between optimizer steps from step 2 on (generation included). TRL step s: "
        "TRL's step_time, median from step 2 on. plan GiB: `grpolab config explain --memory` for the stage's "
        "config; alloc / reserved: the largest torch.cuda peak of any of its processes. bf16_vs_fp32 cells read "
        "bf16 weights / fp32 weights.",
    ]
    for name, kept in report.get("packages", {}).get("from_image", {}).items():
        if kept["here"] != kept["locked"]:  # the check says where it does not follow the lock
            lines.append(f"Not the lock's: {name} {kept['here']} here (lock {kept['locked']}): {kept['why']}.")
    later = [n for n, r in report["stages"].items() if str(r.get("reason")).startswith("time budget")]
    if later:
        lines.append(f"Skipped for time; a second call runs them: `--only {','.join(later)}`.")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> None:
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
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="toy size on CPU, GPU-only stages skipped (tests)")
    budgets = f"default {DEFAULT_BUDGET_S['gpu']:.0f}; {DEFAULT_BUDGET_S['cpu']:.0f} with --cpu"
    parser.add_argument("--budget", type=float, help=f"seconds for setup and stages ({budgets})")
    parser.add_argument("--out", type=Path, help="report JSON (default bench/results/gpu_check.json, _cpu with --cpu)")
    parser.add_argument("--only", help="comma-separated stages to run (the others are skipped)")
    parser.add_argument("--wheels", type=Path, default=DEFAULT_WHEELS, help="wheels to install when packages lack")
    parser.add_argument("--no-install", action="store_true", help="never install wheels")
    parser.add_argument("--pins", action="store_true", help="print the carried wheels as name==version and exit")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed at the end)")
    args = parser.parse_args(argv)
    args.only = set(args.only.split(",")) if args.only else None
    if args.only and (unknown := args.only - set(STAGE_NAMES)):
        parser.error(f"unknown stages {sorted(unknown)}; stages are {', '.join(STAGE_NAMES)}")
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget must be a positive number of seconds, not {args.budget:g}")
    return args


def skip_reason(ctx: Context, stage: Stage, only: set | None) -> str | None:
    if only and stage.name not in only:
        return "not in --only"
    if ctx.cpu and stage.cpu_skip:
        return stage.cpu_skip
    left, timeout = remaining(ctx), stage.timeout(ctx.cpu)
    if left < START_FRACTION * timeout:
        return f"time budget: {max(left, 0):.0f} s left, under {START_FRACTION:g} x its {timeout} s timeout"
    return None


def run_stage(ctx: Context, stage: Stage) -> dict:
    timeout = min(stage.timeout(ctx.cpu), remaining(ctx))
    # A stage must start on a free GPU: what is still held here was left by the one before.
    before = None if ctx.cpu else gpu_now()
    print(f"stage {stage.name}: {stage.what} (timeout {timeout:.0f} s; GPU before: {before})", flush=True)
    try:
        result = RUNNERS[stage.runner](ctx, stage, timeout)
    except Exception as exc:  # one broken stage must not cost the others their turn
        result = {"status": "fail", "reason": f"{type(exc).__name__}: {exc}"}
    if result.get("status") == "fail" and result.get("log"):
        result["log_tail"] = log_tail(Path(result["log"]))
    result["gpu_before"] = before
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pins:
        try:
            print("\n".join(f"{n}=={v}" for n, v in pins().items()))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    t0 = time.monotonic()
    mode = "cpu" if args.cpu else "gpu"
    budget = args.budget or DEFAULT_BUDGET_S[mode]
    size = CPU_SIZE if args.cpu else GPU_SIZE
    out = args.out or REPO / "bench" / "results" / ("gpu_check_cpu.json" if args.cpu else "gpu_check.json")
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "check": "gpu_check",
        "mode": mode,
        "budget_s": budget,
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    report.update(plan=stage_plan(args.cpu, budget), model={"params": 0, "config": size.model}, stages={})

    def left() -> float:
        return t0 + budget - time.monotonic()

    def finish(code: int, setup_failure: str | None = None) -> int:
        if setup_failure:
            report["stages"] = {
                s.name: {"status": "fail", "reason": f"setup stopped: {setup_failure}"} for s in STAGES
            }
        report["elapsed_s"] = round(time.monotonic() - t0, 1)
        write_report(report, out)
        if (work / "logs").is_dir():
            write_logs(work, out)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
        print(markdown(report))
        return code

    setup = bootstrap(args.wheels, work / "site", not args.no_install, min(size.setup["install"], left()))
    report["packages"] = setup
    if setup.get("error"):
        return finish(1, setup["error"])
    env = child_env(work / "site" if setup.get("site") else None, args.cpu)
    if setup.get("site"):
        sys.path.insert(0, setup["site"])  # this process plans memory through grpolab (pydantic) too

    spec = {"modules": IMPORTS, "wanted": setup["wanted"], "ops": ops_to_build(STAGES, args.cpu, args.only)}
    code, stdout, stderr = python_child(
        [str(HERE / "facts.py"), json.dumps(spec)], env=env, timeout=min(size.setup["facts"], left())
    )
    facts = tagged(stdout, "FACTS") or {"error": stderr[-2000:]}
    report["machine"] = facts
    write_report(report, out)  # before the model build: a crash there still leaves the facts
    if failure := import_failure(facts) or (facts.get("error") and f"facts: {facts['error']}"):
        return finish(1, failure)
    if not args.cpu and not facts.get("cuda"):
        return finish(1, "no CUDA GPU visible (use --cpu for the toy version)")

    model_dir = work / "model"
    code, stdout, stderr = python_child(
        ["-c", BUILD, json.dumps(size.model), str(model_dir)], env=env, timeout=min(size.setup["build"], left())
    )
    params = tagged(stdout, "PARAMS")
    if code != 0 or not params:
        return finish(1, f"model build failed: {stderr[-1500:]}")
    report["model"]["params"] = params
    report["setup_s"] = round(time.monotonic() - t0, 1)
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
        deadline=t0 + budget,
    )
    print(f"model built: {params / 1e6:.1f}M parameters; {remaining(ctx):.0f} s of budget left", flush=True)

    for stage in STAGES:
        started = time.monotonic()
        reason = skip_reason(ctx, stage, args.only)
        result = {"status": "skip", "reason": reason} if reason else run_stage(ctx, stage)
        result.update(what=stage.what, timeout_s=stage.timeout(args.cpu), stage_s=round(time.monotonic() - started, 1))
        ctx.results[stage.name] = result
        report["stages"][stage.name] = {k: v for k, v in result.items() if k != "trl_args"}
        print(f"  -> {result['status']}" + (f": {result['reason']}" if result.get("reason") else ""), flush=True)
        report["elapsed_s"] = round(time.monotonic() - t0, 1)
        write_report(report, out)  # a call cut short still leaves every finished stage on disk
    failed = [n for n, r in report["stages"].items() if r["status"] == "fail"]
    return finish(1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
