"""Rule-based built-in rewards (`rewards: - name: ...`), with TRL's reward signature. The format rewards
follow Open-R1's definitions so an imported Open-R1 recipe trains the same reward."""

from __future__ import annotations

import math
import re

from .errors import completion_text

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
THINK_ANSWER_FORMAT = r"<think>.*?</think>\s*<answer>.*?</answer>"
_STEP = re.compile(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)", re.MULTILINE)


def answer_part(text: str) -> str:
    """The <answer>...</answer> content when present, else the whole completion."""
    match = _ANSWER_TAG.search(text)
    return match.group(1) if match else text


def exact_match(completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion (or its <answer> tag) equals the `answer` column, ignoring surrounding space."""
    return [float(answer_part(completion_text(c)).strip() == str(a).strip()) for c, a in zip(completions, answer)]


def numeric_match(completions, answer, **kwargs) -> list[float]:
    """1.0 when the first number in the completion (or its <answer> tag) equals `answer` numerically."""
    pairs = [
        (_NUMBER.search(answer_part(completion_text(c))), _NUMBER.search(str(a))) for c, a in zip(completions, answer)
    ]
    close = lambda f, t: math.isclose(float(f.group()), float(t.group()), rel_tol=0, abs_tol=1e-6)  # noqa: E731
    return [float(bool(f and t) and close(f, t)) for f, t in pairs]


def format_reward(
    completions, pattern: str = THINK_ANSWER_FORMAT, anchor: str = "full", strip: bool = True, **kwargs
) -> list[float]:
    """1.0 when the whole (stripped unless `strip: false`) completion matches `pattern` (default
    <think>...</think><answer>...</answer>), or its start with `anchor: start` (Open-R1's re.match)."""
    if anchor not in ("full", "start"):
        raise ValueError(f"anchor must be full or start, not {anchor!r}")
    regex = re.compile(pattern, re.DOTALL)
    check = regex.fullmatch if anchor == "full" else regex.match
    return [float(bool(check(completion_text(c).strip() if strip else completion_text(c)))) for c in completions]


def tag_count(completions, **kwargs) -> list[float]:
    """Open-R1's tag_count_reward: 0.25 per format tag that appears exactly once (credit while learning it)."""
    tags = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")
    return [sum(0.25 for tag in tags if completion_text(c).count(tag) == 1) for c in completions]


def reasoning_steps(completions, min_steps: int = 3, **kwargs) -> list[float]:
    """Open-R1's reasoning_steps_reward: step markers counted, full reward from `min_steps` on."""
    return [min(1.0, len(_STEP.findall(completion_text(c))) / min_steps) for c in completions]


def repetition_penalty(completions, ngram_size: int = 3, max_penalty: float = -1.0, **kwargs) -> list[float]:
    """Open-R1's repetition penalty: max_penalty x the share of repeated word n-grams (0 when none repeat)."""
    if max_penalty > 0:
        raise ValueError(f"max_penalty {max_penalty} must be <= 0 (it is a penalty)")
    out = []
    for c in completions:
        words = completion_text(c).lower().split()
        grams = list(zip(*[words[i:] for i in range(ngram_size)]))
        out.append((1 - len(set(grams)) / len(grams)) * max_penalty if len(words) >= ngram_size else 0.0)
    return out


def length_penalty(
    completions, completion_ids=None, max_length: int = 256, soft_cache: int | None = None, **kwargs
) -> list[float]:
    """DAPO's soft overlong punishment: 0 up to max_length - soft_cache tokens, then linearly down to -1."""
    cache = soft_cache if soft_cache is not None else max(1, max_length // 4)
    lengths = (
        map(len, completion_ids) if completion_ids is not None else (len(completion_text(c)) for c in completions)
    )
    return [
        0.0 if n <= max_length - cache else (max_length - cache - n) / cache if n <= max_length else -1.0
        for n in lengths
    ]
