"""The error every reward failure becomes, and how a sample is shown in it."""

from __future__ import annotations


class RewardFunctionError(RuntimeError):
    """A reward function raised or returned something unusable; says which and on what sample."""


def completion_text(completion) -> str:
    """Completions are strings (standard prompts) or message lists (chat prompts)."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"] if completion else ""


def show_sample(prompts, completions, columns: dict, i: int, limit: int = 600) -> str:
    """One sample as the user would recognise it: its prompt, completion and dataset columns."""
    shown = {"prompt": prompts[i] if i < len(prompts) else None, "completion": completions[i]}
    shown.update({k: v[i] for k, v in columns.items() if isinstance(v, list) and len(v) == len(completions)})
    text = repr(shown)
    return text if len(text) < limit else text[:limit] + "...}"
