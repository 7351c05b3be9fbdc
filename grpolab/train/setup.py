"""The stages before the trainer: the layered config, the process environment, where the run
executes (every `auto` decided once), the model and tokenizer, and the data."""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import logging
import os
import re
import sys
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.layers import preset_dir
from grpolab.config.rules import eval_file
from grpolab.config.trl_compat import check_installed
from grpolab.demo import builtin_rows, demo_model_path
from grpolab.rewards.build import build_rewards
from grpolab.run.wandb_run import wandb_enabled
from grpolab.runtime import dist as dists
from grpolab.runtime import hardware
from grpolab.runtime.resolve import Resolved, resolve
from grpolab.runtime.trl_args import to_trl_kwargs
from grpolab.train import data as datas
from grpolab.train import model as models
from grpolab.train.resume import resume_config
from grpolab.tune import memory


def load_config(request) -> GRPOConfigLoader:
    """The layered config. With no model anywhere (no --model, no --config), the embedded demo runs."""
    if request.resume:
        loader = resume_config(request)
    else:
        demo = not request.gives_model()
        config_path = str(preset_dir() / "grpo_demo.yaml") if demo else request.config
        loader = GRPOConfigLoader(
            mode=request.mode, config_path=config_path, overrides=list(request.overrides), flags=request.flags()
        )
        if demo:  # said once the config is valid: an error is the only line a bad command prints
            print(f"no --model given: running the embedded demo ({config_path})")
    for warning in loader.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return loader


def apply_environment(cfg) -> None:
    """Every variable the run sets, before torch/transformers read them: the config's `env:`
    section, quiet Hub telemetry, MLflow grouped by the project like WandB."""
    os.environ.update(cfg.env)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if "mlflow" in cfg.logging.report_to:
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", cfg.logging.project)


def join_distributed(cfg) -> dists.DistInfo:
    """This process's place in a launch. srun tasks get torch's rank variables here."""
    if (started_by := dists.launcher()) == "srun":
        os.environ.update(dists.srun_rank_env(os.environ, cfg.cluster.main_process_ip, cfg.cluster.main_process_port))
    return dists.detect(started_by=started_by)


def pin_one_gpu(cfg, dist, environ=os.environ) -> bool:
    """A run of one process sees one GPU. With several visible and no launcher, transformers
    spreads the model over all of them with DataParallel, which TRL refuses. Must run before
    torch touches CUDA; a CUDA_VISIBLE_DEVICES the user set is kept."""
    one_process = cfg.mode == "local" or (cfg.cluster.num_processes == 1 and cfg.cluster.num_machines == 1)
    if not one_process or dist.world_size > 1 or cfg.cluster.device == "cpu" or "CUDA_VISIBLE_DEVICES" in environ:
        return False
    if hardware.probe(use_torch=False).gpu_count < 2:  # nothing to choose between (nvidia-smi's count)
        return False
    environ["CUDA_VISIBLE_DEVICES"] = "0"
    return True


def resolve_runtime(cfg, dist) -> Resolved:
    """Every `auto` for this machine; a setting the machine cannot honour stops here."""
    pinned = pin_one_gpu(cfg, dist)
    resolved = resolve(cfg, hardware.probe(), dist)
    if resolved.world_size == 1 and resolved.visible_gpus > 1 and resolved.launcher == "this process":
        raise ConfigError.of(
            "cluster.num_processes",
            f"is 1, and {resolved.visible_gpus} GPUs are visible: TRL refuses to spread one process over them.",
            "set CUDA_VISIBLE_DEVICES=0 for one GPU, or `--mode cluster` to train on all of them",
        )
    if pinned and resolved.device == "cuda":
        print("note: one process trains on one GPU (CUDA_VISIBLE_DEVICES=0); use --mode cluster to train on all")
    for note in resolved.notes:
        print(f"note: {note}")
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and resolved.device == "cpu":
        # accelerate would quietly train plain DDP: FSDP has no CPU path there.
        raise ConfigError.of(
            "cluster.backend",
            "is FSDP (from the accelerate config), but accelerate runs FSDP on GPUs only; this run is on CPU.",
            "use an accelerate config with DDP or DeepSpeed for CPU ranks",
            "accelerate launch",
        )
    if resolved.problems:
        raise ConfigError(list(resolved.problems))
    check_installed(to_trl_kwargs(cfg, resolved))  # a field the installed TRL lacks, before any model loads
    if resolved.device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # deepspeed, when installed, warns on every import otherwise
    elif cfg.cluster.use_vllm == "auto" and not resolved.use_vllm:
        print(
            "note: vLLM is not installed; generating with transformers (pip install 'trl[vllm]' for faster generation)"
        )
    return resolved


def prepare_process(cfg, resolved: Resolved) -> None:
    """Threads, library logging and the seed, once torch may load."""
    import torch
    import transformers

    torch.set_num_threads(resolved.threads)
    transformers.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()  # weight-loading bars; the training bar stays
    quiet_libraries(cfg)
    transformers.set_seed(cfg.training.seed)


# What libraries print that the user cannot act on: deprecations inside transformers' and TRL's
# own calls, wandb's notes on an offline run (grpolab says once where it is and how to upload
# it), and bitsandbytes on CPUs without its optional kernels (QLoRA runs on GPUs). Matched by
# text, so a warning about the user's own settings, data or reward code still shows.
UNACTIONABLE = (
    r"`is_gradient_checkpointing` is deprecated",
    r"`torch\.jit\.script_method` is deprecated",
    r"URL not available in offline run",
    r"Running in WANDB offline mode",
    r"Failed to load CPU gemm_4bit_forward",
)

NOISE = re.compile("|".join(UNACTIONABLE))


def _quiet(record: logging.LogRecord) -> bool:  # one filter object: added twice, logging keeps it once
    return not NOISE.search(record.getMessage())


def quiet_libraries(cfg) -> None:
    """The one filter of library noise (UNACTIONABLE), for Python warnings, transformers' and
    bitsandbytes' logging and wandb's terminal warnings, installed before the trainer exists."""
    warnings.filterwarnings("ignore", message=f".*(?:{NOISE.pattern})")
    for name in ("transformers", "bitsandbytes.backends.cpu.ops"):
        for where in (logging.getLogger(name), *logging.getLogger(name).handlers):
            where.addFilter(_quiet)
    with contextlib.redirect_stdout(io.StringIO()):  # transformers prints the offline line as it imports
        importlib.import_module("transformers.integrations.integration_utils")

    if wandb_enabled(cfg.logging.report_to):
        import wandb

        termwarn = getattr(wandb.termwarn, "__wrapped__", wandb.termwarn)
        wandb.termwarn = functools.wraps(termwarn)(
            lambda text, *a, **k: None if NOISE.search(str(text)) else termwarn(text, *a, **k)
        )


def model_path(cfg) -> str:
    """model.name_or_path, or the embedded demo model (built and cached on first use)."""
    return cfg.model.name_or_path or str(demo_model_path())


def checkpoint_bytes(cfg, model_name: str) -> int | None:
    """About how many bytes one checkpoint takes on disk: the memory plan's weights and optimizer
    states of the whole model (planned for one process: every rank's shards together). None
    when the model's shape is not on this machine yet (a Hub model not downloaded)."""
    try:
        shape = memory.resolve_shape(model_name)
    except ConfigError:
        return None
    parts = memory.plan(cfg, shape, world=1, gpu_gib=None).components
    return int(parts["weights"] + parts["optimizer"])


@dataclass
class TrainingData:
    train_set: object  # datasets.Dataset with `prompt` and the columns the rewards read
    dropped: int  # prompts dropped as too long for the context
    longest: int  # tokens of the longest prompt kept
    context: int | None
    eval_rows: list[dict] | None  # held-out rows (string prompt + answer), when data.eval_split is set
    eval_set: object = None  # the rows data.test_size carved from the training data (datasets.Dataset)
    sources: dict | None = None  # data.datasets: {source: {"rows", "of", "weight"}} in the mixture
    eval_dropped: int = 0  # held-out prompts dropped as too long


def training_data(cfg, tokenizer, model, reward_needs, eval_reward_needs=None) -> TrainingData:
    """Load, check columns, format prompts, drop prompts that do not fit the context; held-out rows."""
    d, e, seed, sources = cfg.data, cfg.eval, cfg.training.seed, None
    max_len = cfg.generation.max_completion_length
    if d.datasets:  # a mixture: each source's system prompt is applied while mixing
        train_set, sources = datas.load_mixture(d, seed, builtin_rows, needs=reward_needs)
        train_set = datas.head(train_set, d.max_samples)
    else:
        train_set = datas.load_split(d, d.split, d.max_samples, seed=seed, builtin_rows=builtin_rows)
    datas.check_columns(train_set, reward_needs, f"`{d.dataset}`" if d.dataset else "the mixture")
    train_set = datas.format_prompts(train_set, tokenizer, None if d.datasets else d.system_prompt)
    context = models.context_length(model, tokenizer)
    train_set, dropped, longest = datas.drop_too_long(train_set, tokenizer, max_len, context)
    # Held-out prompts take the training path: columns, system prompt, chat template, too-long drop.
    eval_set, eval_dropped, eval_rows, split = None, 0, None, e.split
    if d.test_size is not None:
        train_set, eval_set = datas.carve_eval(train_set, d.test_size, seed)
    if eval_file(cfg):  # a held-out file is its own split: all of its rows, whatever data.split names
        source = d.model_copy(update={"dataset": e.dataset, "datasets": None})
        split = source.split
    elif split:
        source = d.model_copy(update={"dataset": e.dataset}) if e.dataset else d
    if split:
        eval_set = datas.load_split(source, split, e.max_prompts, seed=seed + 1, builtin_rows=builtin_rows)
        datas.check_columns(eval_set, eval_reward_needs or reward_needs, f"`{source.dataset}` [{split}]")
        eval_set = datas.format_prompts(eval_set, tokenizer, d.system_prompt)
        max_new = e.max_completion_length or max_len
        # The held-out prompts' own completion limit is the fix that leaves training as it is.
        eval_set, eval_dropped, _ = datas.drop_too_long(
            eval_set, tokenizer, max_new, context, "eval.max_completion_length"
        )
    if eval_set is not None:
        eval_rows = [{k: v for k, v in r.items() if k != "source"} for r in datas.head(eval_set, e.max_prompts)]
        if not eval_rows:
            raise ConfigError.of(
                "eval.split" if e.split else "data.test_size",
                "leaves no held-out prompts after filtering.",
                "use a split with rows that fit the context, or a larger data.test_size",
            )
    return TrainingData(train_set, dropped, longest, context, eval_rows, eval_set, sources, eval_dropped)


def preflight(cfg) -> None:
    """What --dry-run checks, without the weights (tokenizer, model config and context, rewards,
    data): before a launch starts its ranks, so a bad path, reward or dataset fails here once."""
    from transformers import AutoConfig

    name = model_path(cfg)
    tokenizer = models.load_tokenizer(name, cfg.model)
    config = models.from_pretrained(
        AutoConfig, name, cfg.model, revision=cfg.model.revision, trust_remote_code=cfg.model.trust_remote_code
    )
    _, reward_needs = build_rewards(cfg.rewards, cfg.generation.max_completion_length)
    training_data(cfg, tokenizer, SimpleNamespace(config=config), reward_needs)  # reads only model.config
