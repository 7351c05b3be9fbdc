"""Rules across fields, checked before anything starts: TRL's GRPOConfig rules (and a few of
its trainer's) for a given world size, and the recommended ranges, which are warnings only.
Each problem names the key to change and the nearest value that works."""

from __future__ import annotations

import importlib.util
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .derive import derive, reference_model, resolved_generation
from .errors import Problem, shown
from .keys import flatten, lookup
from .schema import DATA_FILE_SUFFIXES, GRPOLabConfig
from .yaml_io import format_float, real_path


def _collector(origin_of):
    """(the list, add(key, message, fix)): each problem is placed at its key's origin."""
    problems: list[Problem] = []

    def add(key: str, message: str, fix: str | None = None) -> None:
        problems.append(Problem(key, message, fix, origin_of(key)))

    return problems, add


def cross_field_problems(cfg: GRPOLabConfig, world_size: int, origin_of) -> list[Problem]:
    """TRL's GRPOConfig.__post_init__ rules (and a few trainer-init ones), checked up front: a flat
    check list (batch and round sizes, reference model, evaluation, warmup)."""
    problems, add = _collector(origin_of)
    t, g = cfg.training, cfg.grpo
    P, GA, G, W = t.per_device_train_batch_size, t.gradient_accumulation_steps, g.num_generations, world_size
    at = f" (world size {W})"
    if g.generation_batch_size != "auto" and g.steps_per_generation is not None:
        # The fix keeps whichever of the two makes whole rounds of whole groups.
        round_works = g.generation_batch_size % (P * W) == 0 and g.generation_batch_size % G == 0
        keep = "`grpo.steps_per_generation: null` keeps generation_batch_size"
        if not round_works:
            keep = "`grpo.generation_batch_size: auto` keeps steps_per_generation"
        what = "and grpo.steps_per_generation cannot both be set."
        add("grpo.generation_batch_size", what, f"delete one of them: {keep}")
        return problems
    B, _ = resolved_generation(cfg, W)
    if g.generation_batch_size != "auto" and B % (P * W):
        what = f"{B} must be divisible by per_device_train_batch_size x world size = {P} x {W} = {P * W}{at}."
        fix = f"set `grpo.generation_batch_size: {_multiple_near(B, math.lcm(P * W, G))}` (or `auto`)"
        add("grpo.generation_batch_size", what, fix)
    elif B % G and g.generation_batch_size == "auto":
        steps = g.steps_per_generation or GA
        key = "grpo.steps_per_generation" if g.steps_per_generation else "training.gradient_accumulation_steps"
        fix = f"set `{key}: {_multiple_near(steps, G // math.gcd(P * W, G))}`, or `grpo.num_generations` to a divisor"
        sizes = f"{key.split('.')[1]} = {P} x {W} x {steps} = {B} completions{at}"
        what = f"each generation round makes per_device_train_batch_size x world size x {sizes}, which is not"
        add(key, f"{what} divisible by grpo.num_generations = {G}.", f"{fix} of {B}")
    elif B % G:
        fix = f"set `grpo.generation_batch_size: {_multiple_near(B, math.lcm(P * W, G))}`"
        add("grpo.generation_batch_size", f"{B} must be divisible by grpo.num_generations = {G}.", fix)
    extra = {**(t.model_extra or {}), **(g.model_extra or {})}
    has_reference, why = reference_model(cfg)
    if extra.get("sync_ref_model") and not has_reference:  # TRL raises for both reasons
        fix = ", or `grpo.beta` > 0" if g.beta == 0 else ", or train all weights (`model.lora.enabled: false`)"
        what = f"needs a reference model, and none is loaded ({why})."
        add("grpo.sync_ref_model", what, f"set `grpo.sync_ref_model: false`{fix}")
    if extra.get("log_completions_hub_repo") is not None and not g.log_completions:  # TRL: `is not None`
        add("grpo.log_completions_hub_repo", "needs grpo.log_completions: true.", "set `grpo.log_completions: true`")
    if extra.get("auto_find_batch_size"):
        what = "is not supported by GRPO (halving the batch would split prompt groups)."
        fix = "delete it and lower `training.per_device_train_batch_size` instead"
        add("training.auto_find_batch_size", what, fix)
    if cfg.data.eval_every_steps and not has_held_out(cfg):
        fix = "set `data.eval_split` (e.g. eval for builtin:addition) or `data.eval_every_steps: 0`"
        add("data.eval_every_steps", "needs held-out prompts, and data.eval_split is null.", fix)
    problems += eval_problems(cfg, origin_of)
    if isinstance(t.warmup_steps, float) and not t.warmup_steps.is_integer() and t.warmup_steps >= 1:
        what = f"{t.warmup_steps} is neither a whole number of steps nor a ratio in [0, 1)."
        add("training.warmup_steps", what, f"set `training.warmup_steps: {int(t.warmup_steps)}`")
    return problems


def eval_metric_names(cfg: GRPOLabConfig) -> list[str]:
    """The metrics one evaluation point computes (eval/accuracy needs an `answer` column)."""
    k = cfg.eval.samples_per_prompt
    names = ["eval/reward", *(f"eval/rewards/{r.label}" for r in cfg.eval.rewards or cfg.rewards)]
    names += [f"eval/mean@{k}", "eval/pass@1", *([f"eval/pass@{k}"] if k > 1 else [])]
    return names + ["eval/accuracy", "eval/truncated", "eval/length"]


def eval_file(cfg: GRPOLabConfig) -> bool:
    """`eval.dataset` is a local data file: a separate held-out file, its own split (no eval.split)."""
    dataset = cfg.eval.dataset
    return bool(dataset) and not cfg.eval.split and dataset.lower().endswith(DATA_FILE_SUFFIXES)


def has_held_out(cfg: GRPOLabConfig) -> bool:
    """Held-out prompts exist: a split (eval.split, data.eval_split), carved rows, or a held-out file."""
    return bool(cfg.eval.split or cfg.data.test_size or eval_file(cfg))


def eval_problems(cfg: GRPOLabConfig, origin_of) -> list[Problem]:
    """The `eval:` section names metrics and rewards that must exist, and needs held-out prompts."""
    e = cfg.eval
    problems, add = _collector(origin_of)
    names = eval_metric_names(cfg)
    rewards = [r.label for r in e.rewards or cfg.rewards]
    for key, metric in (("eval.keep_best.metric", e.keep_best), ("eval.stop_at.metric", e.stop_at)):
        if metric is not None and metric.metric not in names:
            what = f"`{metric.metric}` is not an eval metric; computed: {', '.join(names)}."
            add(key, what, f"set `{key}: {names[0]}`")
    if e.pass_reward is not None and e.pass_reward not in rewards:
        what = f"`{e.pass_reward}` is not one of the eval rewards: {', '.join(rewards)}."
        add("eval.pass_reward", what, f"set `eval.pass_reward: {rewards[0]}`")
    if e.patience is not None and e.keep_best is None:
        what = "counts evaluations without a better eval.keep_best.metric, and eval.keep_best is not set."
        add("eval.patience", what, "set `eval.keep_best: {metric: eval/reward}` or remove `eval.patience`")
    wants = [k for k in ("every_steps", "keep_best", "stop_at", "dataset") if getattr(e, k)]
    wants = [k for k in wants if k != "every_steps" or e.every_steps != cfg.data.eval_every_steps]  # alias: above
    if wants and not has_held_out(cfg):
        what = "needs held-out prompts, and none of eval.split, data.eval_split or data.test_size is set."
        fix = "set `data.test_size: 0.1` (rows carved from the training data) or `eval.split: test`"
        add(f"eval.{wants[0]}", what, fix)
    return problems


def _multiple_near(value: int, step: int) -> int:
    """The multiple of `step` closest to value (ties go up), at least `step`."""
    low = max(step, (value // step) * step)
    high = low if low >= value else low + step
    return low if value - low < high - value else high


@dataclass(frozen=True)
class Recommended:
    low: float
    high: float
    also: float | None = None  # one more value outside the range that is fine (beta 0: KL off)
    note: str = ""


# Outside these ranges a run is allowed but rarely what was meant (README, "Key parameters to tune").
RECOMMENDED: dict[str, Recommended] = {
    "training.learning_rate": Recommended(1e-6, 5e-4),
    "grpo.beta": Recommended(0.001, 0.1, also=0, note=" (or exactly 0 to disable KL)"),
    "grpo.num_generations": Recommended(4, 16),
}


def out_of_range(cfg: GRPOLabConfig) -> list[tuple[str, float, Recommended]]:
    """(key, value, its recommended range) of every value outside RECOMMENDED: the one range check,
    read by `config validate`'s warnings and by doctor's range findings."""
    data = cfg.model_dump(mode="json")
    found = [(key, lookup(data, key), rec) for key, rec in RECOMMENDED.items()]
    return [(key, value, rec) for key, value, rec in found if value != rec.also and not rec.low <= value <= rec.high]


def range_text(value, rec: Recommended) -> str:
    """`VALUE is outside the recommended range LOW to HIGH`, numbers as the presets write them."""
    text, low, high = (format_float(v) if isinstance(v, float) else str(v) for v in (value, rec.low, rec.high))
    return f"{text} is outside the recommended range {low} to {high}{rec.note}"


def range_warnings(cfg: GRPOLabConfig, origin_of) -> list[Problem]:
    return [Problem(key, range_text(value, rec) + ".", None, origin_of(key)) for key, value, rec in out_of_range(cfg)]


def world_size_warnings(cfg: GRPOLabConfig, origin_of) -> list[Problem]:
    """A cluster config whose process count is `auto` is checked on the usual GPU counts too."""
    return [
        Problem(p.key, f"would fail on {size} processes: {p.message}", p.fix, p.origin)
        for size in (2, 4, 8)
        for p in cross_field_problems(cfg, size, origin_of)
    ]


# ----------------------------------------------------------------------------- pass-through fields
# transformers' TrainingArguments.__post_init__, TRL's GRPOConfig.__post_init__ and GRPOTrainer's
# init reject these values; they are found here, before the run directory exists.
FSDP_OPTIONS = tuple("full_shard shard_grad_op no_shard hybrid_shard hybrid_shard_zero2 offload auto_wrap".split())
# Set by the launcher for each rank: one inherited from `env:` makes a single process wait for
# ranks that never come, or a rank write another run's directory.
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")


# The optimizers transformers builds from another package (its trainer_optimizer.py), by name
# prefix: without the package the trainer fails with an ImportError at the first step.
OPTIMIZER_PACKAGES = {
    "schedulefree": ("schedule_free",),
    "galore_torch": ("galore",),
    "apollo_torch": ("apollo",),
    "lomo_optim": ("lomo", "adalomo"),
    "grokadamw": ("grokadamw",),
    "optimi": ("stable_adamw",),
    "torchao": ("adamw_torch_4bit", "adamw_torch_8bit"),
    "torch_xla": ("adamw_torch_xla",),
    "torch_npu": ("adamw_torch_npu",),
    "torchdistx": ("adamw_anyprecision",),
    "bitsandbytes": ("adamw_bnb", "adamw_8bit", "paged_", "ademamix", "lion_", "rmsprop_bnb"),
}
# The packages transformers' callback for each `logging.report_to` tracker imports (any one will do).
TRACKER_PACKAGES = {
    **{name: (name,) for name in ("wandb", "mlflow", "trackio", "comet_ml", "clearml", "dvclive", "swanlab")},
    "tensorboard": ("tensorboard", "tensorboardX"),
}
PIP_NAMES = {
    "comet_ml": "comet-ml",
    "optimi": "torch-optimi",
    **{name: name.replace("_", "-") for name in ("galore_torch", "apollo_torch", "lomo_optim")},
}


# The whole numbers the layers under grpolab hold: numpy's seed (np.random.seed, called by
# transformers' set_seed) takes 0 to 2**32 - 1, and torch, numpy and accelerate keep every count in
# 64 bits. A value outside validates as a Python int and then dies in the first step (seed -1 was
# numpy's "Seed must be between 0 and 2**32 - 1" after the model had loaded).
SEED_MAX = 2**32 - 1
# The arguments a transformers schedule function requires beyond the optimizer and the step counts
# the Trainer passes it; they come from lr_scheduler_kwargs. tests/config/test_rules.py reads
# transformers' own signatures and fails when this table misses one.
SCHEDULE_NEEDS = {"warmup_stable_decay": ("num_decay_steps",)}
INT64_MAX = 2**63 - 1


def integer_range_problems(cfg: GRPOLabConfig, origin_of) -> list[Problem]:
    """Every whole-number value of the config (grpolab's keys and TRL's pass-through fields alike)
    within what the libraries below hold: seeds 0..2**32-1, every other number 64-bit."""
    problems, add = _collector(origin_of)
    for key, value in flatten(cfg.model_dump(mode="python")).items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if key.rpartition(".")[2].endswith("seed") and not 0 <= value <= SEED_MAX:
            what = f"{shown(value)} is not a seed: numpy and torch take a seed from 0 to {SEED_MAX:,}"
            add(key, what, f"`{key}: 42` (any whole number from 0 to {SEED_MAX})")
        elif key.endswith("_batch_size") and value < 1:  # a count of prompts: torch's DataLoader refuses < 1
            add(key, f"{value} is not a batch size (1 or more).", f"delete `{key}` (its default)")
        elif not -INT64_MAX - 1 <= value <= INT64_MAX:
            what = f"{shown(value)} does not fit in 64 bits, the whole numbers torch and numpy hold"
            add(key, what, "set it to e.g. 100 (a whole number below 2**63 = 9223372036854775808)")
    return problems


def pass_through_problems(cfg: GRPOLabConfig, origin_of) -> list[Problem]:
    """Values TRL, transformers and torch would reject when the trainer is built or at its first
    step, checked up front: a flat check list, grouped by topic (evaluation and schedule,
    intervals, precision, optimizer, distributed engines and data loading, GRPO fields, LoRA, env)."""
    t, g = cfg.training, cfg.grpo
    tx, gx = dict(t.model_extra or {}), dict(g.model_extra or {})
    problems, add = _collector(origin_of)

    # Evaluation: grpolab scores held-out prompts itself; TRL's evaluation loop needs an
    # eval_dataset grpolab never passes, so the trainer fails on the first evaluation.
    held_out = "set `data.eval_split` (or `data.test_size`) and `data.eval_every_steps: N` instead"
    if tx.get("eval_strategy", "no") != "no":
        what = f"`{tx['eval_strategy']}` starts TRL's evaluation loop, which GRPO runs here have no eval dataset for"
        fix = f"delete it (or `no`) and {held_out}"
        add("training.eval_strategy", f"{what}; grpolab scores held-out prompts itself.", fix)
    for key in (key for key in ("do_eval", "eval_on_start") if tx.get(key)):
        what = "turns on TRL's evaluation loop, which GRPO runs here have no eval dataset for."
        add(f"training.{key}", what, f"delete it and {held_out}")
    best = "`grpolab compare` picks the best checkpoint by metric"
    if tx.get("save_strategy") == "best":
        what = "`best` saves on the best TRL evaluation metric, which GRPO runs here do not compute."
        add("training.save_strategy", what, f"`training.save_strategy: steps`; {best}")
    if tx.get("load_best_model_at_end"):
        what = "needs TRL's evaluation loop (eval strategy = save strategy), which GRPO runs here do not use."
        add("training.load_best_model_at_end", what, f"delete it; {best}")
    schedule = t.lr_scheduler_type
    if schedule in ("reduce_lr_on_plateau", "greedy"):
        what = f"`{schedule}` steps on an evaluation metric, and GRPO runs here have no TRL evaluation."
        add("training.lr_scheduler_type", what, "set `training.lr_scheduler_type: cosine` (or linear)")
    # transformers' schedulers read these from lr_scheduler_kwargs when the trainer creates them.
    kwargs = tx.get("lr_scheduler_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    if schedule.endswith("with_min_lr") and ("min_lr" in kwargs) == ("min_lr_rate" in kwargs):
        what = f"`{schedule}` needs exactly one of min_lr and min_lr_rate in training.lr_scheduler_kwargs."
        add("training.lr_scheduler_type", what, "set `training.lr_scheduler_kwargs: {min_lr_rate: 0.1}`")
    for name in (name for name in SCHEDULE_NEEDS.get(schedule, ()) if name not in kwargs):
        steps = max(1, t.max_steps // 10) if t.max_steps > 0 else 100
        what = f"`{schedule}` needs `{name}` in training.lr_scheduler_kwargs (it has no default)."
        fix = f"set `training.lr_scheduler_kwargs: {{{name}: {steps}}}`"
        if kwargs:
            fix = f"add `{name}: {steps}` to training.lr_scheduler_kwargs"
        add("training.lr_scheduler_type", what, fix)
    lr_end = kwargs.get("lr_end", 1e-7)
    if schedule == "polynomial" and isinstance(lr_end, (int, float)) and t.learning_rate <= lr_end:
        lr, end = format_float(t.learning_rate), format_float(lr_end)
        what = f"{lr} must be above the polynomial schedule's lr_end {end}."
        add("training.learning_rate", what, f"set `training.learning_rate: {format_float(lr_end * 10)}`")

    # Intervals: above 1 a step count must be whole (below 1 it is a ratio of the total), where
    # transformers reads it: under its `steps` strategy.
    for kind, default in {"logging": "steps", "save": "steps", "eval": "no"}.items():
        key = f"{kind}_steps"
        value = getattr(t, key, None) if kind != "eval" else tx.get(key)
        steps_strategy = tx.get(f"{kind}_strategy", default) == "steps"
        if steps_strategy and isinstance(value, float) and value > 1 and not value.is_integer():
            what = f"{value:g} is neither a whole number of steps nor a ratio below 1."
            add(f"training.{key}", what, f"set `training.{key}: {round(value)}`")
    steps = tx.get("torch_empty_cache_steps")
    if steps is not None and steps <= 0:
        what = f"must be a number of steps >= 1, got {steps}."
        add("training.torch_empty_cache_steps", what, "set it to e.g. 100, or delete it")

    # Precision: at most one of fp16 and bf16; bf16 `auto` turns bf16 on where the hardware has it.
    if tx.get("fp16") and t.bf16 is not False:
        auto = " (auto picks bf16 on bf16 GPUs and CPUs)" if t.bf16 == "auto" else ""
        what = f"and training.bf16 = {t.bf16} would both be on{auto}."
        add("training.fp16", what, "set `training.bf16: false` with fp16, or delete `training.fp16`")
    if tx.get("fp16_full_eval") and tx.get("bf16_full_eval"):
        what = "and training.bf16_full_eval cannot both be true."
        add("training.fp16_full_eval", what, "delete one of them (`training.bf16_full_eval: false`)")

    # The optimizer: torch's Adam family refuses these when the trainer creates it, at the first step.
    adam = {"adam_beta1": (1.0, 0.9), "adam_beta2": (1.0, 0.999), "adam_epsilon": (math.inf, 1e-8)}
    for key, (high, fix) in adam.items():
        value = tx.get(key)
        if isinstance(value, (int, float)) and not 0 <= value < high:
            allowed = f"from 0 up to (not including) {high:g}" if high < math.inf else ">= 0"
            what = f"{value:g} is not what the optimizer takes: {allowed}."
            add(f"training.{key}", what, f"`training.{key}: {fix:g}`")

    noise = tx.get("neftune_noise_alpha")
    if isinstance(noise, (int, float)) and noise < 0:
        what = f"{noise:g} is not a noise scale: torch draws the embedding noise from [-alpha, alpha]."
        add("training.neftune_noise_alpha", what, "`training.neftune_noise_alpha: 5.0` (or null: no noise)")

    # What the run needs from this machine: the optimizer's package, and the Hub for uploads.
    offline = {**os.environ, **cfg.env}.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "false", "")
    if tx.get("push_to_hub") and offline:
        what = "uploads to the Hugging Face Hub, and HF_HUB_OFFLINE is set (the upload fails at the first save)."
        add("training.push_to_hub", what, "delete it (or unset HF_HUB_OFFLINE)")
    optim = str(tx.get("optim", "adamw_torch"))
    package = next((pkg for pkg, prefixes in OPTIMIZER_PACKAGES.items() if optim.startswith(prefixes)), None)
    if package is not None and importlib.util.find_spec(package) is None:
        fix = f"`training.optim: adamw_torch`, or `pip install {PIP_NAMES.get(package, package)}`"
        add("training.optim", f"`{optim}` needs the {package} package, which is not installed here.", fix)
    for tracker in cfg.logging.report_to:  # transformers' callback for it fails when the trainer is built
        packages = TRACKER_PACKAGES.get(tracker, ())
        if packages and not any(importlib.util.find_spec(name) for name in packages):
            rest = ", ".join(t for t in cfg.logging.report_to if t != tracker) or "none"
            fix = f"`logging.report_to: [{rest}]`, or `pip install {PIP_NAMES.get(packages[0], packages[0])}`"
            add("logging.report_to", f"`{tracker}` logs through the {packages[0]} package, not installed here.", fix)

    # Options of the distributed engines (strings transformers parses into enums).
    fsdp = tx.get("fsdp")
    if bad := [w for w in fsdp.split() if w not in FSDP_OPTIONS] if isinstance(fsdp, str) else []:
        fix = "delete it and set `cluster.backend: fsdp` (grpolab writes the accelerate FSDP config)"
        add("training.fsdp", f"`{bad[0]}` is not an FSDP option; allowed: {', '.join(FSDP_OPTIONS)}.", fix)
    if tx.get("ddp_backend") is not None:
        what = "makes transformers join a process group, and the launcher already picks the backend for each run"
        add("training.ddp_backend", what + " (nccl on GPUs, gloo on CPU ranks).", "delete it")
    for key in ("deepspeed", "accelerator_config"):
        value = tx.get(key)
        text = isinstance(value, str) and value.startswith("{")  # JSON text, which the schema checked
        if isinstance(value, str) and not text and not Path(value).expanduser().is_file():
            backend = " and set `cluster.backend: deepspeed` (grpolab writes the DeepSpeed config)"
            fix = f"delete it{backend * (key == 'deepspeed')}, or give the path of an existing JSON file, or a mapping"
            add(f"training.{key}", f"`{value}` is not a JSON file (looked at {real_path(value)}).", fix)
    # Data loading: TRL keeps only the prompt under remove_unused_columns, and torch's DataLoader
    # rules are checked when the trainer first iterates.
    if tx.get("remove_unused_columns"):
        what = "drops every dataset column but the prompt, and rewards read the others (numeric_match reads `answer`)."
        add("training.remove_unused_columns", what, "`training.remove_unused_columns: false`")
    workers = tx.get("dataloader_num_workers", 0)
    if isinstance(workers, int) and workers < 0:
        what = f"{workers} is not a number of worker processes (0 or more)."
        add("training.dataloader_num_workers", what, "`training.dataloader_num_workers: 0`")
    some_workers = "delete it, or set `training.dataloader_num_workers` >= 1"
    if tx.get("dataloader_persistent_workers") and not workers:
        what = (
            "keeps worker processes alive, and training.dataloader_num_workers is 0 (torch's DataLoader refuses it)."
        )
        add("training.dataloader_persistent_workers", what, some_workers)
    if tx.get("dataloader_prefetch_factor") is not None and not workers:
        what = "only applies with worker processes, and training.dataloader_num_workers is 0."
        add("training.dataloader_prefetch_factor", what, some_workers)

    # GRPOConfig's own rules on pass-through fields.
    quantile = gx.get("top_entropy_quantile", 1.0)
    if isinstance(quantile, (int, float)) and not 0 <= quantile <= 1:
        what = f"{quantile:g} is not a fraction of tokens (0 to 1); torch's quantile refused it in the first step."
        add("grpo.top_entropy_quantile", what, "`grpo.top_entropy_quantile: 1.0` (every token)")
    mode = gx.get("vllm_importance_sampling_mode", "sequence_mask")
    correction = gx.get("vllm_importance_sampling_correction", True)
    if g.loss_type == "vespo" and cfg.cluster.use_vllm is not False and correction and not mode.startswith("token_"):
        # GRPOTrainer's init: VESPO weights tokens, so it needs a token-level correction mode.
        what = f"`{mode}` is sequence-level, and grpo.loss_type vespo needs a token-level one."
        fix = "set `grpo.vllm_importance_sampling_mode: token_truncate` (or token_mask)"
        add("grpo.vllm_importance_sampling_mode", what, fix)
    low = gx.get("vllm_importance_sampling_clip_min")
    high = gx.get("vllm_importance_sampling_clip_max", gx.get("vllm_importance_sampling_cap", 3.0))
    if low is not None and high is not None and low >= high:
        what = f"{low:g} must be less than grpo.vllm_importance_sampling_clip_max = {high:g}."
        fix = f"set `grpo.vllm_importance_sampling_clip_min` below {high:g}, or delete it"
        add("grpo.vllm_importance_sampling_clip_min", what, fix)
    no_bound = low is None and gx.get("vllm_importance_sampling_clip_max", 0) is None  # set to null, not left out
    if correction and mode.endswith("_truncate") and no_bound:
        what = f"a `{mode}` mode needs a clip bound, and both are null."
        add("grpo.vllm_importance_sampling_clip_max", what, "set `grpo.vllm_importance_sampling_clip_max: 3.0`")

    # GRPOTrainer: log-probabilities come from lm_head.weight directly, so an adapter there never trains.
    lora = cfg.model.lora
    targets = [lora.target_modules] if isinstance(lora.target_modules, str) else lora.target_modules
    if lora.enabled and "lm_head" in targets:
        what = "GRPO computes log-probabilities from lm_head.weight directly: that adapter would never train."
        add("model.lora.target_modules", f"includes lm_head, and {what}", "remove `lm_head` from the list")

    # Launcher-owned environment variables.
    for name, value in cfg.env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            what = "is not an environment variable name (letters, digits and _, not starting with a digit)."
            add(f"env.{name}", what, f"rename it, e.g. `{re.sub(r'[^A-Za-z0-9_]', '_', name)}`")
        elif "\x00" in value:
            add(f"env.{name}", "holds a NUL character, which no environment variable can.", "remove it")
        if name in LAUNCHER_ENV or name.startswith("GRPOLAB_"):
            what = "is set per rank by the launcher (and grpolab's hand-off to its ranks); from `env:` every process "
            fix = "delete it; set `cluster.num_processes` / `cluster.num_machines` / `cluster.main_process_*` instead"
            add(f"env.{name}", what + "would inherit it.", fix)
    return problems


def step_count_problems(cfg: GRPOLabConfig, world_size: int, origin_of) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) for a run that trains nothing or almost nothing, where that is known
    without loading data: max_steps, or data.max_samples (an upper bound on the rows)."""
    t = cfg.training
    (errors, error), (warnings, warn) = _collector(origin_of), _collector(origin_of)
    if t.max_steps == 0:
        fix = "set `training.max_steps: -1` (use num_train_epochs) or a number of steps"
        error("training.max_steps", "is 0: the run would train nothing.", fix)
        return errors, warnings
    if t.max_steps == 1:
        warn("training.max_steps", "is 1: one optimizer step, which says little about a run.")
    rows = cfg.data.max_samples if not cfg.data.datasets and cfg.data.test_size is None else None
    if rows is None:  # other data: the row count is known once it is loaded
        return errors, warnings
    d = derive(cfg, world_size, rows)
    per_round = d.unique_prompts_per_round
    if d.generation_rounds_per_epoch == 0:
        error(
            "data.max_samples",
            f"{rows} prompts are fewer than one generation round ({per_round} prompts = generation_batch_size "
            f"{d.generation_batch_size} / num_generations {cfg.grpo.num_generations}), so every prompt is "
            "dropped and nothing trains.",
            f"set `data.max_samples: {per_round}` or more (or lower training.per_device_train_batch_size)",
        )
    elif t.max_steps <= 0 and d.total_optimizer_steps <= 1:  # with max_steps, the trainer repeats the rows
        steps = f"at most {d.total_optimizer_steps} optimizer step(s) ({per_round} prompts per generation round)"
        warn("data.max_samples", f"{rows} prompts give {steps}.")
    return errors, warnings
