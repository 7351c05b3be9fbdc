"""Rules across fields, checked before anything starts: TRL's GRPOConfig rules (and a few of
its trainer's) for a given world size, and the recommended ranges, which are warnings only.
Each problem names the key to change and the nearest value that works."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import Problem
from .keys import lookup
from .schema import GRPOLabConfig
from .yaml_io import format_float


def resolved_generation(cfg: GRPOLabConfig, world_size: int) -> tuple[int, int]:
    """(generation_batch_size B, steps_per_generation S) exactly as TRL's GRPOConfig resolves them."""
    t, g = cfg.training, cfg.grpo
    per_step = t.per_device_train_batch_size * world_size
    if g.generation_batch_size == "auto":
        steps = g.steps_per_generation or t.gradient_accumulation_steps
        return per_step * steps, steps
    return g.generation_batch_size, g.generation_batch_size // per_step


def cross_field_problems(cfg: GRPOLabConfig, world_size: int, origin_of) -> list[Problem]:
    """TRL's GRPOConfig.__post_init__ rules (and a few trainer-init ones), checked up front."""
    problems = []
    t, g = cfg.training, cfg.grpo
    P, GA, G, W = t.per_device_train_batch_size, t.gradient_accumulation_steps, g.num_generations, world_size
    at = f" (world size {W})"
    if g.generation_batch_size != "auto" and g.steps_per_generation is not None:
        problems.append(
            Problem(
                "grpo.generation_batch_size",
                "and grpo.steps_per_generation cannot both be set.",
                "delete one of them (`generation_batch_size: auto` keeps steps_per_generation)",
                origin_of("grpo.generation_batch_size"),
            )
        )
        return problems
    B, _ = resolved_generation(cfg, W)
    if g.generation_batch_size != "auto" and B % (P * W):
        good = _multiple_near(B, math.lcm(P * W, G))
        problems.append(
            Problem(
                "grpo.generation_batch_size",
                f"{B} must be divisible by per_device_train_batch_size x world size = {P} x {W} = {P * W}{at}.",
                f"set `grpo.generation_batch_size: {good}` (or `auto`)",
                origin_of("grpo.generation_batch_size"),
            )
        )
    elif B % G:
        if g.generation_batch_size == "auto":
            steps = g.steps_per_generation or GA
            key = "grpo.steps_per_generation" if g.steps_per_generation else "training.gradient_accumulation_steps"
            need = G // math.gcd(P * W, G)
            new_steps = _multiple_near(steps, need)
            problems.append(
                Problem(
                    key,
                    "each generation round makes per_device_train_batch_size x world size x "
                    f"{key.split('.')[1]} = {P} x {W} x {steps} = {B} completions{at}, "
                    f"which is not divisible by grpo.num_generations = {G}.",
                    f"set `{key}: {new_steps}`, or `grpo.num_generations` to a divisor of {B}",
                    origin_of(key),
                )
            )
        else:
            problems.append(
                Problem(
                    "grpo.generation_batch_size",
                    f"{B} must be divisible by grpo.num_generations = {G}.",
                    f"set `grpo.generation_batch_size: {_multiple_near(B, math.lcm(P * W, G))}`",
                    origin_of("grpo.generation_batch_size"),
                )
            )
    extra = {**(t.model_extra or {}), **(g.model_extra or {})}
    if extra.get("sync_ref_model") and g.beta == 0:
        problems.append(
            Problem(
                "grpo.sync_ref_model",
                "needs a reference model, and grpo.beta is 0 (no reference model is loaded).",
                "set `grpo.beta` > 0 or `grpo.sync_ref_model: false`",
                origin_of("grpo.sync_ref_model"),
            )
        )
    if extra.get("log_completions_hub_repo") and not g.log_completions:
        problems.append(
            Problem(
                "grpo.log_completions_hub_repo",
                "needs grpo.log_completions: true.",
                "set `grpo.log_completions: true`",
                origin_of("grpo.log_completions_hub_repo"),
            )
        )
    if extra.get("auto_find_batch_size"):
        problems.append(
            Problem(
                "training.auto_find_batch_size",
                "is not supported by GRPO (halving the batch would split prompt groups).",
                "delete it and lower `training.per_device_train_batch_size` instead",
                origin_of("training.auto_find_batch_size"),
            )
        )
    if cfg.data.eval_every_steps and not cfg.data.eval_split:
        problems.append(
            Problem(
                "data.eval_every_steps",
                "needs held-out prompts, and data.eval_split is null.",
                "set `data.eval_split` (e.g. eval for builtin:addition) or `data.eval_every_steps: 0`",
                origin_of("data.eval_every_steps"),
            )
        )
    if t.max_steps == -1 and t.num_train_epochs <= 0:
        problems.append(
            Problem(
                "training.num_train_epochs",
                "must be > 0 when training.max_steps is -1.",
                "set `training.max_steps`",
                origin_of("training.num_train_epochs"),
            )
        )
    if isinstance(t.warmup_steps, float) and not t.warmup_steps.is_integer() and t.warmup_steps >= 1:
        problems.append(
            Problem(
                "training.warmup_steps",
                f"{t.warmup_steps} is neither a whole number of steps nor a ratio in [0, 1).",
                f"set `training.warmup_steps: {int(t.warmup_steps)}`",
                origin_of("training.warmup_steps"),
            )
        )
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


def range_warnings(cfg: GRPOLabConfig, origin_of) -> list[Problem]:
    data = cfg.model_dump(mode="json")
    warnings = []
    for key, rec in RECOMMENDED.items():
        value = lookup(data, key)
        if value == rec.also or rec.low <= value <= rec.high:
            continue
        warnings.append(
            Problem(
                key,
                f"{_num(value)} is outside the recommended range {_num(rec.low)} to {_num(rec.high)}{rec.note}.",
                None,
                origin_of(key),
            )
        )
    return warnings


def _num(value) -> str:
    """A number as the presets write it (`5.0e-4`, `16`)."""
    return format_float(value) if isinstance(value, float) else str(value)


def world_size_warnings(cfg: GRPOLabConfig, origin_of, sizes=(2, 4, 8)) -> list[Problem]:
    """A cluster config whose process count is `auto` is checked on the usual GPU counts too."""
    warnings = []
    for size in sizes:
        for p in cross_field_problems(cfg, size, origin_of):
            warnings.append(Problem(p.key, f"would fail on {size} processes: {p.message}", p.fix, p.origin))
    return warnings
