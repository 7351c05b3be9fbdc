"""The wrapper every configured reward goes through: kwargs bound, only the columns it accepts passed,
a stable metric name, and each answer checked (an error naming the reward and a sample, not a NaN)."""

from __future__ import annotations

import asyncio
import copy
import inspect
import math
import numbers
import sys
import time

from .errors import RewardFunctionError, show_sample

# Keyword arguments TRL passes to every reward function besides the dataset columns.
TRL_ARGS = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
# Of those, TRL's objects (not data): passed as they are, never copied.
SHARED_ARGS = {"trainer_state", "log_extra", "log_metric", "environments"}
SLOW_SECONDS = 5.0  # a reward slower than this per batch gets one note naming it


def make_reward(spec: str, func, kwargs: dict, label: str):
    """Wrap `func` (TRL's reward signature) as a reward named `label` for the reward `spec`."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # no readable signature (a C callable): pass everything, as TRL does
        params = {}
    takes_all = not params or any(p.kind == p.VAR_KEYWORD for p in params.values())
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)

    def call(prompts, completions, columns):
        # Each reward gets its own copies of the data: one that edits `completions[i]` (or a
        # column) in place would otherwise change what the next reward scores and what grpolab
        # checks (a random model reached numeric_match 1.0 that way). TRL's objects are shared.
        given = {
            "prompts": copy.deepcopy(prompts),
            "completions": copy.deepcopy(completions),
            **{k: v if k in SHARED_ARGS else copy.deepcopy(v) for k, v in columns.items()},
        }
        # A function without **kwargs gets only what it names: extra dataset columns (a mixture's
        # `source`, say) must not break a reward that never asked for them.
        args = given if takes_all else {k: v for k, v in given.items() if k in params}
        out = func(**args, **kwargs)
        return asyncio.run(out) if is_async and inspect.iscoroutine(out) else out

    noted: list = []

    def reward(prompts, completions, **columns):
        started = time.perf_counter()
        try:
            values = call(prompts, completions, columns)
        except RewardFunctionError:
            raise
        except Exception as exc:
            sample = _first_failing_sample(call, prompts, completions, columns)
            raise RewardFunctionError(
                f"reward `{spec}` raised {type(exc).__name__}: {exc}\n  on sample {sample}"
            ) from exc
        seconds = time.perf_counter() - started
        if seconds > SLOW_SECONDS and not noted:
            noted.append(seconds)  # once per reward: the time shows which one stalls the steps
            print(
                f"note: reward `{spec}` took {seconds:.1f} s for a batch of {len(completions)} completions; "
                "every training step waits for it (HTTP rewards have timeouts; a Python reward has none)",
                file=sys.stderr,
            )
        values = check_values(spec, values, prompts, completions, columns)
        _log_by_source(label, values, columns)
        return values

    reward.__name__ = reward.__qualname__ = label  # TRL logs rewards/<name>/mean
    return reward


def _log_by_source(label: str, values: list, columns: dict) -> None:
    """In a mixture, this reward's mean per source (reward_by_source/<source>/<label>): a mixture can
    improve on one source while getting worse on another."""
    sources, log_metric = columns.get("source"), columns.get("log_metric")
    if not callable(log_metric) or not isinstance(sources, list) or len(sources) != len(values):
        return
    groups: dict = {}
    for src, v in zip(sources, values):
        if v is not None:
            groups.setdefault(src, []).append(v)
    for src, vs in groups.items():
        log_metric(f"reward_by_source/{src}/{label}", sum(vs) / len(vs))


def _is_0d(value) -> bool:
    shape = getattr(value, "shape", None)
    return shape is not None and tuple(shape) == ()


def _as_number(value):
    """A float, None, or the value itself when not a number (0-d tensors and numpy scalars are numbers)."""
    if value is None or isinstance(value, numbers.Real):
        return None if value is None else float(value)
    if _is_0d(value) and hasattr(value, "item") and isinstance(item := value.item(), numbers.Real):
        return float(item)
    return value


def check_values(spec: str, values, prompts, completions, columns) -> list:
    """One finite float or None per completion, or a RewardFunctionError saying what came back."""
    n, per = len(completions), "one float (or None) per completion"

    def fail(what: str, i: int | None = 0) -> RewardFunctionError:
        sample = "" if i is None else f"\n  on sample {show_sample(prompts, completions, columns, i)}"
        return RewardFunctionError(f"reward `{spec}` returned {what}{sample}")

    if inspect.isgenerator(values) or inspect.isasyncgen(values) or inspect.iscoroutine(values):
        raise fail(f"a {type(values).__name__}; it must return a list with {per} (wrap a generator in list(...))")
    if values is None or isinstance(values, (str, bytes, dict, numbers.Number)) or _is_0d(values):
        raise fail(f"{_short(values)} for {n} completions; it must return a list with {per}")
    try:
        values = list(values)
    except TypeError:
        raise fail(f"{_short(values)}; it must return a list with {per}", None) from None
    if len(values) != n:
        raise fail(f"{len(values)} values for {n} completions; it must return {per}")
    out = []
    for i, raw in enumerate(values):
        v = _as_number(raw)
        if v is not None and (not isinstance(v, float) or not math.isfinite(v)):
            raise fail(
                f"{_short(raw)} for completion {i}; rewards must be finite numbers (None skips a completion)", i
            )
        out.append(v)
    if n and all(v is None for v in out):
        raise fail(
            f"None for all {n} completions: None skips a completion, so this batch got no reward from it "
            "(check the columns it reads)"
        )
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:120] + "..."


def _first_failing_sample(call, prompts, completions, columns) -> str:
    """Rerun one completion at a time to find which sample the function chokes on."""
    n = len(completions)
    for i in range(n):
        single = {k: [v[i]] if isinstance(v, list) and len(v) == n else v for k, v in columns.items()}
        try:
            call([prompts[i]], [completions[i]], single)
        except Exception:
            return show_sample(prompts, completions, columns, i)
    return show_sample(prompts, completions, columns, 0)
