"""The built-in demo task: two-digit addition ("12+34=" -> "46"). Every (a, b) pair with 10 <= a, b <= 99 belongs to
exactly one split, decided by a checksum of the unordered pair: "34+12" is held out whenever "12+34" is, so
commutativity cannot leak held-out problems into training."""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Sequence
from functools import cache

MIN_OPERAND = 10
MAX_OPERAND = 99
SPLITS = ("train", "eval")
# About 1 in EVAL_MODULUS unordered pairs is held out (~20%: ~1,600 eval, ~6,500 train).
EVAL_MODULUS = 5

_LEADING_NUMBER = re.compile(r"\s*(\d+)")


def _split_of(a: int, b: int) -> str:
    # crc32 is stable across processes and Python versions (unlike hash()).
    key = f"{min(a, b)}+{max(a, b)}".encode()
    return "eval" if zlib.crc32(key) % EVAL_MODULUS == 0 else "train"


@cache
def _pool(split: str) -> tuple[tuple[int, int], ...]:
    operands = range(MIN_OPERAND, MAX_OPERAND + 1)
    return tuple((a, b) for a in operands for b in operands if _split_of(a, b) == split)


def split_size(split: str) -> int:
    """Number of distinct prompts available in `split`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return len(_pool(split))


def make_addition_rows(n: int, seed: int, split: str = "train") -> list[dict]:
    """`n` distinct rows {"prompt": "12+34=", "answer": "46"} drawn from `split`; the same (n, seed, split) always
    gives the same rows in the same order."""
    size = split_size(split)
    if not 0 <= n <= size:
        raise ValueError(f"n must be between 0 and {size} (the size of the {split!r} split), got {n}")
    pairs = random.Random(seed).sample(_pool(split), n)
    return [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in pairs]


def parse_number(text: str) -> str | None:
    """The integer a completion starts with (leading whitespace allowed), or None. Reading stops at the first
    non-digit, so "46<eos>..." and "46+1" both give "46"; leading zeros are dropped ("046" -> "46") so the match
    is numeric."""
    match = _LEADING_NUMBER.match(text)
    return str(int(match.group(1))) if match else None


def greedy_accuracy(model, tokenizer, rows: Sequence[dict], max_new_tokens: int = 8, batch_size: int = 64) -> float:
    """Fraction of `rows` whose greedy completion starts with exactly `answer` (the demo model's
    own check while it is built; training scores held-out rows with the general evaluator)."""
    from grpolab.sampling.sampler import Sampling, sample

    if not rows:
        raise ValueError("greedy_accuracy needs at least one row")
    greedy = Sampling(max_new_tokens, greedy=True, batch_size=batch_size)
    drawn = sample(model, tokenizer, [row["prompt"] for row in rows], greedy).flat
    return sum(parse_number(c.text) == row["answer"] for c, row in zip(drawn, rows)) / len(rows)
