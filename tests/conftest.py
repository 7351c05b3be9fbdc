"""Shared fixtures: an offline environment, and tiny local models built from scratch.

Nothing here touches the network: the Hub, datasets and WandB are forced offline for the whole
session (the variables are set at import time, before transformers / huggingface_hub read
them), and the models are made locally in a few hundred milliseconds.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(OFFLINE_ENV)
# Tiny models are far faster single-threaded: on small VMs every OpenMP hand-off costs
# milliseconds, more than the matmul itself (8 ms vs 10 us per tiny addmm here).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The suite runs one worker per core, and the work that still takes 2 threads (the demo model's
# build, a child `grpolab train` with threads on auto) spin-waits for the core the other worker
# holds. Passive waiting, set before torch loads OpenMP, keeps that from turning a build of about a
# minute into several.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
# Keep caches that tests write (datasets' Arrow cache, wandb's config/artifact staging) out of $HOME.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="grpolab-tests-"))
for _var, _sub in (
    ("HF_DATASETS_CACHE", "hf_datasets"),
    ("WANDB_CONFIG_DIR", "wandb_config"),
    ("WANDB_CACHE_DIR", "wandb_cache"),
    ("WANDB_DATA_DIR", "wandb_data"),
):
    os.environ.setdefault(_var, str(_SESSION_TMP / _sub))
atexit.register(shutil.rmtree, _SESSION_TMP, ignore_errors=True)


@pytest.fixture(autouse=True)
def offline_env(monkeypatch):
    """Re-assert the offline variables for every test, and undo any environment change a test
    (or code under test, e.g. a config's `env:` section applied in-process) made."""
    saved = dict(os.environ)
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("WANDB_API_KEY", "WANDB_DISABLED", "GRPOLAB_RUN_DIR", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(key, raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)


def child_env() -> dict:
    """Environment for running grpolab in a child process: offline, repo importable."""
    env = dict(os.environ, **OFFLINE_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for key in ("WANDB_API_KEY", "WANDB_DISABLED", "GRPOLAB_RUN_DIR", "WORLD_SIZE", "RANK"):
        env.pop(key, None)
    return env


@pytest.fixture
def subprocess_env() -> dict:
    return child_env()


# --------------------------------------------------------------------------- tiny models
CHARS = list("0123456789+=-*/ abcdefghijklmnopqrstuvwxyz<>.,:?!\n")
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def make_char_tokenizer(chat_template: str | None = None):
    """A character-level fast tokenizer (one token per character) with pad/eos/bos tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2}
    for char in CHARS:
        vocab.setdefault(char, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", bos_token="<bos>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


def build_tiny_model(out: Path, kind: str = "gpt2", context: int | None = None) -> Path:
    """Save a randomly initialised tiny causal LM + tokenizer into `out`.

    gpt2:  GPT2Config (2 layers, 32 wide, context 64), tokenizer WITHOUT a chat template.
    llama: LlamaConfig (2 layers, 32 wide, context 128), tokenizer WITH a chat template.
    `context` overrides the number of positions.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = make_char_tokenizer(CHAT_TEMPLATE if kind == "llama" else None)
    ids = {"eos_token_id": 1, "pad_token_id": 0, "bos_token_id": 2}
    if kind == "llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=context or 128,
            **ids,
        )
        model = LlamaForCausalLM(config)
    elif kind == "gpt2":
        config = GPT2Config(
            vocab_size=len(tokenizer), n_positions=context or 64, n_embd=32, n_layer=2, n_head=2, **ids
        )
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> str:
    """Path of a tiny GPT-2-style model without a chat template (context 64)."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_gpt2"), "gpt2"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    """Path of a tiny Llama-style model with a chat template (context 128)."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_llama"), "llama"))


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def write_config(tmp_path):
    """write_config(data, name="test.yaml") -> path of a YAML config file (JSON is valid YAML)."""

    def write(data: dict, name: str = "test.yaml", folder: Path | None = None) -> Path:
        path = (folder or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    return write


def machine(device: str = "cpu", bf16: bool = False, vllm: bool = False, liger: bool = False):
    """The facts of a machine for `loader.trl_kwargs(facts=...)`: CPU or one GPU (native bf16 or
    not), with vLLM / liger-kernel installed or not."""
    from grpolab.runtime.hardware import GPU, HardwareFacts

    gpus = (GPU("test GPU", (9, 0) if bf16 else (7, 0)),) if device == "cuda" else ()
    installed = {name for name, on in (("vllm", vllm), ("liger_kernel", liger)) if on}
    return HardwareFacts(gpus=gpus, cpu_bf16=bf16 and device == "cpu", cores=2, installed=frozenset(installed))


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture
def jsonl():
    """jsonl(path) -> list of records."""
    return read_jsonl


# --------------------------------------------------------------------------- training runs
def deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def fast_settings(model: str | None, output_dir, extra: dict | None = None) -> dict:
    """A config that trains for seconds on CPU: 2 steps, 2 completions of 4 tokens, no tracker."""
    base = {
        "mode": "local",
        "output_dir": str(output_dir),
        "model": {"name_or_path": model},
        "data": {"max_samples": 8},
        "training": {"max_steps": 2, "per_device_train_batch_size": 2, "logging_steps": 1, "save_steps": 1000},
        "grpo": {"num_generations": 2, "generation_batch_size": 2, "beta": 0.0},
        "generation": {"max_completion_length": 4},
        "logging": {"report_to": ["none"]},
    }
    return deep_merge(base, extra or {})


@pytest.fixture
def fast_config(tmp_path, write_config):
    """fast_config(model, extra=None, name="fast.yaml") -> a config file for a seconds-long run
    (runs go under tmp_path/runs)."""

    def make(model: str | None, extra: dict | None = None, name: str = "fast.yaml") -> Path:
        return write_config(fast_settings(model, tmp_path / "runs", extra), name)

    return make


class TrainResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err
        self.run_dir = None
        for line in out.splitlines():
            if line.startswith("run ") and ": " in line:  # "run finished: <dir>"
                self.run_dir = Path(line.split(": ", 1)[1].strip())

    def __repr__(self) -> str:
        return (
            f"TrainResult(code={self.code}, run_dir={self.run_dir})\n--- "
            f"stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-3000:]}"
        )


@pytest.fixture
def train(capsys):
    """train(*argv) runs `python training/grpo_training.py ARGV` in this process (saves the
    ~5 s import of a subprocess) and returns a TrainResult (code, out, err, run_dir)."""

    def run(*argv) -> TrainResult:
        import argparse

        from grpolab.train.pipeline import run_from_args
        from grpolab.train.request import TrainRequest

        parser = argparse.ArgumentParser(prog="grpo_training.py")
        TrainRequest.add_arguments(parser)
        args = parser.parse_args([str(a) for a in argv])
        capsys.readouterr()
        code = run_from_args(args)
        captured = capsys.readouterr()
        return TrainResult(code, captured.out, captured.err)

    return run


def copy_tracked(folder: str, dest: Path) -> Path:
    """Copy the files git tracks under `folder` of the checkout (links followed) into dest/folder:
    a test never sees the user's own files there (Method 2's configs/grpo_cluster_experiment1.yaml)."""
    import shutil
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", folder], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in filter(None, listed.split("\0")):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, target)
    return dest / folder
