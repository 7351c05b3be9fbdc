"""Reward functions: the built-ins, loading user rewards by `module:function` or
`path/to/file.py:function`, and a wrapper that names the function and the sample when one fails.

A reward function has TRL's signature: `f(prompts, completions, **columns) -> list[float | None]`,
where `columns` are the dataset's other columns (e.g. `answer`) repeated per completion.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import numbers
import re
import sys
from pathlib import Path

from grpolab.config import ConfigError, Problem

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
THINK_ANSWER_FORMAT = r"<think>.*?</think>\s*<answer>.*?</answer>"


class RewardFunctionError(RuntimeError):
    """A reward function raised or returned something unusable; says which and on what sample."""


def completion_text(completion) -> str:
    """Completions are strings (standard prompts) or message lists (chat prompts)."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"] if completion else ""


def _answer_part(text: str) -> str:
    """The <answer>...</answer> content when present, else the whole completion."""
    match = _ANSWER_TAG.search(text)
    return match.group(1) if match else text


def exact_match(completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion (or its <answer> tag) equals the `answer` column, ignoring surrounding space."""
    return [float(_answer_part(completion_text(c)).strip() == str(a).strip()) for c, a in zip(completions, answer)]


def numeric_match(completions, answer, **kwargs) -> list[float]:
    """1.0 when the first number in the completion (or its <answer> tag) equals `answer` numerically."""
    rewards = []
    for c, a in zip(completions, answer):
        found = _NUMBER.search(_answer_part(completion_text(c)))
        target = _NUMBER.search(str(a))
        ok = bool(found and target) and math.isclose(
            float(found.group()), float(target.group()), rel_tol=0, abs_tol=1e-6
        )
        rewards.append(float(ok))
    return rewards


def format_reward(completions, pattern: str = THINK_ANSWER_FORMAT, **kwargs) -> list[float]:
    """1.0 when the whole completion matches the regex `pattern` (default `<think>...</think><answer>...</answer>`)."""
    regex = re.compile(pattern, re.DOTALL)
    return [float(bool(regex.fullmatch(completion_text(c).strip()))) for c in completions]


def length_penalty(
    completions, completion_ids=None, max_length: int = 256, soft_cache: int | None = None, **kwargs
) -> list[float]:
    """DAPO's soft overlong punishment: 0 up to max_length - soft_cache tokens, then falling
    linearly to -1 at max_length, -1 beyond. Counts tokens when TRL passes completion_ids."""
    cache = soft_cache if soft_cache is not None else max(1, max_length // 4)
    lengths = (
        [len(ids) for ids in completion_ids]
        if completion_ids is not None
        else [len(completion_text(c)) for c in completions]
    )
    out = []
    for n in lengths:
        if n <= max_length - cache:
            out.append(0.0)
        elif n <= max_length:
            out.append((max_length - cache - n) / cache)
        else:
            out.append(-1.0)
    return out


BUILTINS = {
    "exact_match": exact_match,
    "numeric_match": numeric_match,
    "format": format_reward,
    "length_penalty": length_penalty,
}
# Dataset columns each built-in reads.
BUILTIN_COLUMNS = {"exact_match": ["answer"], "numeric_match": ["answer"], "format": [], "length_penalty": []}
_TRL_ARGS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}


def load_reward(spec: str, index: int):
    """Resolve a reward name: a built-in, `module:function`, or `path/to/file.py:function`."""
    if spec in BUILTINS:
        return BUILTINS[spec]
    target, _, func_name = spec.rpartition(":")
    key = f"rewards[{index}].name"
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise ConfigError(
                    Problem(
                        key,
                        f"reward file `{target}` not found.",
                        "give a path relative to the current directory",
                        spec,
                    )
                )
            module_name = f"grpolab_user_reward_{abs(hash(str(path.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as exc:  # the user's module failed to import: say which and why
        raise ConfigError(
            Problem(
                key,
                f"reward `{spec}` could not be imported: {type(exc).__name__}: {exc}.",
                "check the module path and that it imports on its own",
                spec,
            )
        ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise ConfigError(
            Problem(
                key, f"`{target}` has no function `{func_name}`; it has: {', '.join(names) or 'none'}.", None, spec
            )
        )
    return func


def required_columns(spec: str, func) -> list[str]:
    """Dataset columns a reward needs: the built-ins' list, or a user function's named parameters."""
    if spec in BUILTIN_COLUMNS:
        return BUILTIN_COLUMNS[spec]
    needed = []
    for name, param in inspect.signature(func).parameters.items():
        if (
            name in _TRL_ARGS
            or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
            or param.default is not param.empty
        ):
            continue
        needed.append(name)
    return needed


def make_reward(spec: str, func, kwargs: dict, label: str):
    """Wrap a reward: fixed kwargs bound, a stable metric name, and failures that name the
    function and show the first sample it fails on."""
    takes_prompts = _takes_prompts(func)  # once here, not inspect.signature on every call

    def reward(prompts, completions, **columns):
        try:
            values = (
                func(prompts=prompts, completions=completions, **columns, **kwargs)
                if takes_prompts
                else func(completions=completions, **columns, **kwargs)
            )
        except Exception as exc:
            sample = _first_failing_sample(func, prompts, completions, columns, kwargs)
            raise RewardFunctionError(
                f"reward `{spec}` raised {type(exc).__name__}: {exc}\n  on sample {sample}"
            ) from exc
        if values is None or len(values) != len(completions):
            got = "None" if values is None else f"{len(values)} values"
            raise RewardFunctionError(
                f"reward `{spec}` returned {got} for {len(completions)} completions; it must "
                "return one float (or None) per completion"
            )
        for i, v in enumerate(values):
            if (
                v is not None and not isinstance(v, numbers.Real) or (isinstance(v, numbers.Real) and math.isnan(v))
            ):  # numpy scalars are Real
                raise RewardFunctionError(
                    f"reward `{spec}` returned {v!r} for completion {i}; rewards must be numbers "
                    f"(None skips a completion)\n  on sample {_sample(prompts, completions, columns, i)}"
                )
        return values

    reward.__name__ = label  # TRL logs rewards/<name>/mean
    return reward


def _takes_prompts(func) -> bool:
    params = inspect.signature(func).parameters
    return "prompts" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _sample(prompts, completions, columns, i) -> str:
    shown = {"prompt": prompts[i], "completion": completions[i]}
    shown.update({k: v[i] for k, v in columns.items() if isinstance(v, list) and len(v) == len(completions)})
    text = repr(shown)
    return text if len(text) < 600 else text[:600] + "...}"


def _first_failing_sample(func, prompts, completions, columns, kwargs) -> str:
    """Rerun one completion at a time to find which sample the function chokes on."""
    for i in range(len(completions)):
        single = {k: [v[i]] if isinstance(v, list) and len(v) == len(completions) else v for k, v in columns.items()}
        try:
            if _takes_prompts(func):
                func(prompts=[prompts[i]], completions=[completions[i]], **single, **kwargs)
            else:
                func(completions=[completions[i]], **single, **kwargs)
        except Exception:
            return _sample(prompts, completions, columns, i)
    return _sample(prompts, completions, columns, 0)


def build_rewards(reward_specs, max_completion_length: int):
    """The configured rewards as (wrapped functions, columns each needs). Import errors are ConfigErrors."""
    funcs, needs, problems = [], {}, []
    for i, entry in enumerate(reward_specs):
        try:
            func = load_reward(entry.name, i)
        except ConfigError as exc:
            problems += exc.problems
            continue
        kwargs = dict(entry.kwargs)
        if entry.name == "length_penalty":
            kwargs.setdefault("max_length", max_completion_length)
        label = entry.name if entry.name in BUILTINS else entry.name.rpartition(":")[2]
        if any(f.__name__ == label for f in funcs):
            label = f"{label}_{i}"
        funcs.append(make_reward(entry.name, func, kwargs, label))
        needs[entry.name] = [c for c in required_columns(entry.name, func) if c not in kwargs]
    if problems:
        raise ConfigError(problems)
    return funcs, needs
