"""Rewards written in Python (`module:function`, `path/to/file.py:function`) and TRL's as `trl:NAME`
(a factory such as `trl:get_soft_overlong_punishment` is called with the entry's `kwargs`)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from grpolab.config import ConfigError
from grpolab.config.errors import did_you_mean
from grpolab.config.yaml_io import real_path

from .wrap import TRL_ARGS


def import_object(spec: str, key: str, what: str = "reward"):
    """The object behind `module:name` or `path/to/file.py:name`; ConfigErrors name `key` and the spec."""
    target, _, name = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise ConfigError.of(
                    key, f"{what} file `{target}` not found.", "give a path relative to the current directory"
                )
            module_name = f"grpolab_user_{path.stem}_{abs(hash(str(real_path(path))))}"
            if (module := sys.modules.get(module_name)) is None:
                module_spec = importlib.util.spec_from_file_location(module_name, path)
                sys.modules[module_name] = module = importlib.util.module_from_spec(module_spec)
                try:
                    module_spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(module_name, None)
                    raise
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as exc:  # the user's module failed to import: say which and why
        why = f"{what} `{spec}` could not be imported: {type(exc).__name__}: {exc}."
        raise ConfigError.of(key, why, "check the module path and that it imports on its own") from None
    obj = getattr(module, name, None)
    if obj is None:
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        has = ", ".join(names) or "nothing"
        raise ConfigError.of(key, f"`{target}` has no function `{name}` (for {what} `{spec}`); it has: {has}.")
    return obj


def load_python_reward(spec: str, key: str, kwargs: dict):
    """(function, kwargs still to bind) for a user or TRL reward."""
    if not spec.startswith("trl:"):
        func = import_object(spec, key)
        if not callable(func):
            raise ConfigError.of(key, f"`{spec}` is a {type(func).__name__}, not a function.")
        return func, kwargs
    name = spec.partition(":")[2]
    try:
        import trl.rewards as trl_rewards
    except ImportError as exc:
        raise ConfigError.of(key, f"`{spec}` needs TRL: {exc}.", "pip install 'grpolab[train]'") from None
    names = [n for n in getattr(trl_rewards, "__all__", dir(trl_rewards)) if not n.startswith("_")]
    func = getattr(trl_rewards, name, None)
    if not callable(func):
        raise ConfigError.of(
            key, f"TRL has no reward `{name}`; it has: {', '.join(names)}.{did_you_mean(name, names)}"
        )
    if name.startswith("get_"):  # a factory: its arguments are the entry's kwargs
        try:
            return func(**kwargs), {}
        except TypeError as exc:
            where = f"{key.rpartition('.')[0]}.kwargs"
            raise ConfigError.of(where, f"`{spec}`: {exc}.", f"its arguments: {inspect.signature(func)}") from None
    return func, kwargs


def required_columns(func, bound: dict) -> list[str]:
    """Dataset columns a function reads: its named parameters without defaults, other than TRL's own."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return []
    named = {n: p for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return [n for n, p in named.items() if n not in TRL_ARGS and n not in bound and p.default is p.empty]
