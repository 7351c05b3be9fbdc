"""Validation, before any model is loaded: keys, types and bounds, cross-field rules for a
target world size, and the seed's recommended ranges (warnings). Problems are collected, not
raised one by one, so a file's problems are all reported together."""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from .errors import Problem, did_you_mean
from .schema import SECTIONS, GRPOLabConfig, LoraConfig, RewardSpec

# TRL fields that grpolab sets from another key.
OWNED_ELSEWHERE = {
    "output_dir": "`output_dir` (top level)",
    "run_name": "the `--run-name` flag",
    "report_to": "`logging.report_to`",
    "resume_from_checkpoint": "the `--resume RUN_DIR` flag",
    "reward_weights": "the `weight` of each entry in `rewards:`",
    "trust_remote_code": "`model.trust_remote_code`",
    "model_init_kwargs": "the `model:` section (dtype, trust_remote_code, revision, attn_implementation)",
    **{
        k: f"`generation.{k}`"
        for k in ("max_completion_length", "temperature", "top_p", "top_k", "min_p", "repetition_penalty")
    },
    **{
        k: f"`cluster.{k}`"
        for k in ("use_vllm", "vllm_mode", "vllm_server_host", "vllm_server_port", "vllm_gpu_memory_utilization")
    },
}

# Keys that TRL removed or renamed (TRL notes §9.10): say what replaced them.
REMOVED = {
    "max_prompt_length": "was removed from TRL (prompts are never truncated); grpolab drops prompts that "
    "do not fit the model's context and counts them",
    "warmup_ratio": "was removed from transformers 5; use `training.warmup_steps` with a float in [0, 1) as a ratio",
    "use_liger_loss": "was renamed; use `training.use_liger_kernel`",
    "vllm_guided_decoding_regex": "was renamed; use `grpo.vllm_structured_outputs_regex`",
}

# The seed's "Key Parameters to Tune" ranges: outside them is allowed but worth a warning.
RECOMMENDED = {
    "training.learning_rate": (1e-6, 5e-4),
    "grpo.beta": (0.001, 0.1),  # or exactly 0
    "grpo.num_generations": (4, 16),
}


@lru_cache(maxsize=1)
def trl_fields() -> dict:
    return json.loads(Path(__file__).with_name("trl_fields.json").read_text())


def _kind_ok(value, kinds: list[str]) -> bool:
    checks = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "dict": lambda v: isinstance(v, dict),
        "list": lambda v: isinstance(v, list),
        "null": lambda v: v is None,
        "any": lambda v: True,
    }
    return any(checks[k](value) for k in kinds)


def check_keys(data: dict, origin_of) -> list[Problem]:
    """Unknown, misplaced, removed and pass-through keys (with their kinds and choices)."""
    problems: list[Problem] = []
    top_fields = GRPOLabConfig.model_fields
    fields = trl_fields()
    for key, value in data.items():
        if key not in top_fields:
            hint = ""
            for section in ("training", "grpo"):
                if key in fields[section]:
                    hint = f" It is a TRL field: put it under `{section}:`."
            if key in SECTIONS.get("generation").model_fields or key in OWNED_ELSEWHERE:
                hint = f" Set it as {OWNED_ELSEWHERE.get(key, '`generation.' + key + '`')}."
            suggestion = did_you_mean(key, top_fields) or f" Allowed: {', '.join(top_fields)}."
            problems.append(Problem(key, f"unknown top-level key.{suggestion}{hint}", None, origin_of(key)))
            continue
        if key == "rewards":
            problems += _check_rewards(value, origin_of)
        elif key in SECTIONS and isinstance(value, dict):
            problems += _check_section(key, value, origin_of)
    return problems


def _suggest(key: str, known) -> str:
    """' Did you mean `x`?', else the allowed keys when there are few enough to list."""
    known = list(known)
    return did_you_mean(key, known) or (f" Allowed: {', '.join(known)}." if len(known) <= 15 else "")


def _check_rewards(value, origin_of) -> list[Problem]:
    if not isinstance(value, list):
        return []  # pydantic reports the type
    problems = []
    for i, entry in enumerate(value):
        if isinstance(entry, dict):
            for k in entry:
                if k not in RewardSpec.model_fields:
                    problems.append(
                        Problem(
                            f"rewards[{i}].{k}",
                            f"unknown key; allowed: name, weight, kwargs.{did_you_mean(k, RewardSpec.model_fields)}",
                            "put reward arguments under `kwargs:`",
                            origin_of("rewards"),
                        )
                    )
    return problems


def _check_section(section: str, values: dict, origin_of) -> list[Problem]:
    problems = []
    cls = SECTIONS[section]
    fields = trl_fields()
    own_trl = fields.get(section, {})
    other = {"training": "grpo", "grpo": "training"}.get(section)
    for key, value in values.items():
        dotted = f"{section}.{key}"
        where = origin_of(dotted)
        if key in cls.model_fields:
            if section == "model" and key == "lora" and isinstance(value, dict):
                for k in value:
                    if k not in LoraConfig.model_fields:
                        problems.append(
                            Problem(
                                f"model.lora.{k}",
                                f"unknown key.{_suggest(k, LoraConfig.model_fields)}",
                                None,
                                origin_of(f"model.lora.{k}"),
                            )
                        )
            choices = own_trl.get(key, {}).get("choices")
            if choices and isinstance(value, str) and value not in choices:
                problems.append(
                    Problem(
                        dotted,
                        f"`{value}` is not one of: {', '.join(choices)}.{did_you_mean(value, choices)}",
                        None,
                        where,
                    )
                )
            continue
        if key in REMOVED:
            problems.append(Problem(dotted, REMOVED[key] + ".", f"delete `{key}`", where))
        elif key in OWNED_ELSEWHERE and (
            key in own_trl or (other and key in fields[other]) or section not in ("training", "grpo")
        ):
            problems.append(
                Problem(
                    dotted,
                    f"is set through {OWNED_ELSEWHERE[key]} in grpolab.",
                    f"move it to {OWNED_ELSEWHERE[key]}",
                    where,
                )
            )
        elif section in ("training", "grpo") and key in own_trl:
            spec = own_trl[key]
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(Problem(dotted, f"must be a finite number, got {value!r}.", None, where))
            elif not _kind_ok(value, spec["kinds"]):
                problems.append(
                    Problem(
                        dotted,
                        f"expected {' or '.join(spec['kinds'])} (TRL field), got {type(value).__name__} {value!r}.",
                        None,
                        where,
                    )
                )
            elif spec.get("choices") and isinstance(value, str) and value not in spec["choices"]:
                problems.append(
                    Problem(
                        dotted,
                        f"`{value}` is not one of: "
                        f"{', '.join(spec['choices'])}.{did_you_mean(value, spec['choices'])}",
                        None,
                        where,
                    )
                )
        elif other and key in fields[other]:
            problems.append(
                Problem(
                    dotted,
                    f"is a {'GRPOConfig' if other == 'grpo' else 'TrainingArguments'} field and "
                    f"belongs under `{other}:`.",
                    f"move it to `{other}.{key}`",
                    where,
                )
            )
        else:
            known = list(cls.model_fields) + list(own_trl)
            problems.append(Problem(dotted, f"unknown key.{_suggest(key, known)}", None, where))
    return problems


_UNION_LABELS = {"bool", "int", "float", "str", "dict", "list", "none"}


def pydantic_problems(exc: ValidationError, origin_of) -> list[Problem]:
    by_key: dict[str, list] = {}  # a union reports each alternative under one key: join them
    for err in exc.errors():
        if err["type"] == "extra_forbidden":
            continue  # check_keys reported it with a suggestion
        parts = []
        for part in err["loc"]:
            if isinstance(part, int):
                parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
            elif "[" in part or part in _UNION_LABELS or part.startswith("constrained-"):
                # pydantic's labels for union members (`literal[...]`, `bool`, `list[str]`, `constrained-int` ...)
                continue
            else:
                parts.append(str(part))
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        by_key.setdefault(".".join(parts), []).append((message.rstrip("."), err))
    problems = []
    for key, errs in by_key.items():
        messages = list(dict.fromkeys(m for m, _ in errs))
        prefix = "Input should be "
        if len(messages) > 1 and all(m.startswith(prefix) for m in messages):
            message = prefix + ", or ".join(m[len(prefix) :] for m in messages)
        else:
            message = messages[0]
        err = errs[0][1]
        if (
            "input" in err
            and err["type"] != "missing"
            and repr(err["input"]) not in message
            and f"`{err['input']}`" not in message
        ):
            message += f" (got {err['input']!r})"
        origin = origin_of(key.split("[")[0]) if key else None
        message = re.sub(r"a valid dictionary or instance of \w+", "a mapping of `key: value` entries", message)
        problems.append(
            Problem(key, message if message.endswith(("?", ".")) else message + ".", _bound_fix(key, errs), origin)
        )
    return problems


def _bound_fix(key: str, errs) -> str | None:
    """For a number past an inclusive bound, the nearest allowed value is the smallest fix."""
    for _, err in errs:
        ctx = err.get("ctx") or {}
        for bound in ("ge", "le"):
            if bound in ctx:
                return f"set `{key}: {ctx[bound]}`"
    return None


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


def range_warnings(cfg: GRPOLabConfig, origin_of) -> list[Problem]:
    warnings = []
    lr = cfg.training.learning_rate
    lo, hi = RECOMMENDED["training.learning_rate"]
    if not lo <= lr <= hi:
        warnings.append(
            Problem(
                "training.learning_rate",
                f"{lr:g} is outside the recommended range {lo:g} to {hi:g}.",
                None,
                origin_of("training.learning_rate"),
            )
        )
    beta = cfg.grpo.beta
    lo, hi = RECOMMENDED["grpo.beta"]
    if beta != 0 and not lo <= beta <= hi:
        warnings.append(
            Problem(
                "grpo.beta",
                f"{beta:g} is outside the recommended range {lo:g} to {hi:g} (or exactly 0 to disable KL).",
                None,
                origin_of("grpo.beta"),
            )
        )
    g = cfg.grpo.num_generations
    lo, hi = RECOMMENDED["grpo.num_generations"]
    if not lo <= g <= hi:
        warnings.append(
            Problem(
                "grpo.num_generations",
                f"{g} is outside the recommended range {lo} to {hi}.",
                None,
                origin_of("grpo.num_generations"),
            )
        )
    return warnings
