"""`build_rewards`: the configured `rewards:` entries as TRL reward functions, each wrapped (wrap.py)."""

from __future__ import annotations

import re

from grpolab.config import ConfigError

from . import builtin
from . import math as math_rewards
from .http import HttpReward
from .judge import JudgeReward
from .model import LOADED, RewardModel
from .python import load_python_reward, required_columns
from .wrap import make_reward

BUILTINS = {
    "exact_match": builtin.exact_match,
    "numeric_match": builtin.numeric_match,
    "format": builtin.format_reward,
    "length_penalty": builtin.length_penalty,
    "tag_count": builtin.tag_count,
    "reasoning_steps": builtin.reasoning_steps,
    "repetition_penalty": builtin.repetition_penalty,
    "math_verify": math_rewards.math_verify,
    "cosine_length": math_rewards.cosine_length,
    "kimi_length": math_rewards.kimi_length,
}
_READ_ANSWER = ("exact_match", "numeric_match", "math_verify", "cosine_length", "kimi_length")
BUILTIN_COLUMNS = {name: ["answer"] if name in _READ_ANSWER else [] for name in BUILTINS}  # dataset columns each reads


def _load(entry, key: str, max_completion_length: int, trust_remote_code: bool):
    """(function, kwargs to bind, columns it reads) for one entry."""
    if entry.kind == "model":
        args = (entry.batch_size, entry.dtype, entry.device, trust_remote_code)
        return RewardModel(entry.model, f"{key}.model", *args), {}, []
    if entry.kind == "http":
        return HttpReward(entry.http, f"{key}.http"), {}, []
    if entry.kind == "judge":
        return JudgeReward(entry.judge, f"{key}.judge"), {}, []
    kwargs = dict(entry.kwargs)
    if entry.name in BUILTINS:
        if entry.name == "length_penalty":
            kwargs.setdefault("max_length", max_completion_length)
        return BUILTINS[entry.name], kwargs, [c for c in BUILTIN_COLUMNS[entry.name] if c not in kwargs]
    func, kwargs = load_python_reward(entry.name, f"{key}.name", kwargs)
    return func, kwargs, required_columns(func, kwargs)


def _label(entry, func) -> str:
    """The metric name (rewards/<label>/mean): function name, model basename (as TRL), http_<host>, judge_<model>."""
    if entry.kind == "name":
        if entry.name in BUILTINS:
            return entry.name
        return getattr(func, "__name__", None) or entry.name.rpartition(":")[2]
    if entry.kind == "model":
        raw = entry.model.rstrip("/").rsplit("/", 1)[-1]
    elif entry.kind == "http":
        raw = "http_" + entry.http.url.split("://", 1)[-1].split("/", 1)[0]
    else:
        raw = "judge_" + entry.judge.model.rsplit("/", 1)[-1]
    return re.sub(r"[^\w.-]+", "_", raw)


def build_rewards(reward_specs, max_completion_length: int, trust_remote_code: bool = False):
    """(wrapped functions, columns each needs by reward label); every entry's errors in one ConfigError."""
    LOADED.clear()  # the plan lists the reward models of this run only
    funcs, needs, problems = [], {}, []
    for i, entry in enumerate(reward_specs):
        try:
            func, kwargs, columns = _load(entry, f"rewards[{i}]", max_completion_length, trust_remote_code)
        except ConfigError as exc:
            problems += exc.problems
            continue
        label = _label(entry, func)
        if any(f.__name__ == label for f in funcs):
            label = f"{label}_{i}"
        wrapped = make_reward(entry.label, func, kwargs, label)
        wrapped.grpolab_source = func  # the reward model / service behind it (the plan and dry run describe it)
        funcs.append(wrapped)
        needs[entry.label] = columns
    if problems:
        raise ConfigError(problems)
    return funcs, needs


def describe(func) -> str:
    """What a built reward is, for the plan: extra models with their size, services with their URL."""
    source = getattr(func, "grpolab_source", None)
    params = getattr(source, "parameters", None)
    if isinstance(params, int):
        size = f"{params / 1e6:.2f}M parameters"
        return f"reward model {source.path}: an extra model is loaded ({size}, {source.device})"
    if url := getattr(source, "url", None):
        return f"HTTP service {url}"
    cfg = getattr(source, "cfg", None)
    if cfg is not None and hasattr(cfg, "base_url"):
        return f"LLM judge {cfg.model} at {cfg.base_url} (parse {cfg.parse})"
    return ""
