"""The reward functions the pipeline trains with; the code lives in grpolab.rewards (one module
per kind of `rewards:` entry). This module keeps the names the pipeline, the tune room and the
tests import from here."""

from __future__ import annotations

from grpolab.rewards.build import BUILTIN_COLUMNS, BUILTINS, build_rewards, describe
from grpolab.rewards.builtin import (
    THINK_ANSWER_FORMAT,
    exact_match,
    format_reward,
    length_penalty,
    numeric_match,
    reasoning_steps,
    repetition_penalty,
    tag_count,
)
from grpolab.rewards.errors import RewardFunctionError, completion_text
from grpolab.rewards.math import cosine_length, kimi_length, math_verify
from grpolab.rewards.python import load_python_reward
from grpolab.rewards.python import required_columns as _function_columns
from grpolab.rewards.wrap import make_reward


def load_reward(spec: str, index: int):
    """A reward function by name: a built-in, `module:function`, `path/to/file.py:function` or `trl:NAME`."""
    if spec in BUILTINS:
        return BUILTINS[spec]
    return load_python_reward(spec, f"rewards[{index}].name", {})[0]


def required_columns(spec: str, func) -> list[str]:
    """Dataset columns a reward needs: the built-ins' list, or a user function's named parameters."""
    if spec in BUILTIN_COLUMNS:
        return BUILTIN_COLUMNS[spec]
    return _function_columns(func, {})


__all__ = [
    "BUILTINS",
    "BUILTIN_COLUMNS",
    "THINK_ANSWER_FORMAT",
    "RewardFunctionError",
    "build_rewards",
    "completion_text",
    "cosine_length",
    "describe",
    "exact_match",
    "format_reward",
    "kimi_length",
    "length_penalty",
    "load_reward",
    "make_reward",
    "math_verify",
    "numeric_match",
    "reasoning_steps",
    "repetition_penalty",
    "required_columns",
    "tag_count",
]
