"""Offline demo: a tiny character-level GPT-2 that half-solves two-digit addition, for GRPO to improve.
`demo_model_path()` builds (once, ~30 s on 2 cores) and caches the model; the addition task supplies the
train/held-out rows of `builtin:addition`."""

from grpolab.config import ConfigError, Problem
from grpolab.demo.addition import SPLITS, greedy_accuracy, make_addition_rows, parse_number, split_size
from grpolab.demo.tiny_model import build_tokenizer, demo_model_path

__all__ = [
    "build_tokenizer",
    "builtin_rows",
    "demo_model_path",
    "greedy_accuracy",
    "make_addition_rows",
    "parse_number",
]

TASKS = ("addition",)


def builtin_rows(name: str, split: str, n_rows: int | None, seed: int, key: str = "data.split") -> list[dict]:
    """Rows of the built-in dataset `builtin:NAME`; `key` names the config key that chose `split`."""
    if name not in TASKS:
        message = f"unknown built-in task `{name}`; available: {', '.join(TASKS)}."
        raise ConfigError(Problem("data.dataset", message, "set `data.dataset: builtin:addition`"))
    if split not in SPLITS:
        raise ConfigError(Problem(key, f"built-in tasks have the splits {' and '.join(SPLITS)}, not `{split}`.", None))
    return make_addition_rows(min(n_rows or split_size(split), split_size(split)), seed=seed, split=split)
