"""Verified math rewards on math-verify (as Open-R1 and TRL): `\\frac{2}{6}` equals `1/3`. The gold answer is
the `answer` column; one that does not parse gives None (the sample is skipped, not scored as wrong)."""

from __future__ import annotations

import logging
import math
import re
import threading

from .builtin import answer_part
from .errors import completion_text

# A gold answer worth reading as LaTeX: digits, operators or commands, not plain words.
_MATHY = re.compile(r"[\\^_{}=+*/\d-]")


def _verifier():
    try:
        from latex2sympy2_extended import NormalizationConfig
        from math_verify import LatexExtractionConfig, parse, verify
    except ImportError:
        raise ImportError("the math_verify rewards need math-verify: pip install 'math-verify>=0.5.2'") from None
    # math-verify times out with signal.alarm, which only works on the main thread.
    if not (main := threading.current_thread() is threading.main_thread()):
        logging.getLogger("math_verify.parser").setLevel(logging.ERROR)
    timeouts = {"parsing_timeout": 10 if main else None}
    norm = dict(nits=False, malformed_operators=False, basic_latex=True, equations=True, boxed="all", units=True)
    extraction = dict(boxed_match_priority=0, try_extract_without_anchor=False)
    answer_config = [LatexExtractionConfig(normalization_config=NormalizationConfig(**norm), **extraction)]

    def gold(text: str):
        parsed = parse(str(text), **timeouts)
        if not parsed and _MATHY.search(str(text)):  # bare LaTeX (\sqrt{4}, x^2+1): read it as math mode
            parsed = parse(f"${text}$", **timeouts)
        return parsed

    def answer(text: str):
        tagged = answer_part(text)  # an <answer> tag: its content is the answer, anchored or not
        found = parse(tagged, **timeouts) if tagged is not text else None
        return found or parse(text, extraction_config=answer_config, **timeouts) or parse(text, **timeouts)

    def same(g, a) -> bool:
        return bool(verify(g, a, timeout_seconds=5 if main else None))

    return gold, answer, same


def _correct(completions, answer):
    gold_of, answer_of, same = _verifier()
    return [same(g, answer_of(completion_text(c))) if (g := gold_of(a)) else None for c, a in zip(completions, answer)]


def math_verify(completions, answer, **kwargs) -> list[float | None]:
    """1.0 when the completion's answer (<answer> tag, \\boxed{} or last expression) equals `answer`."""
    return [None if ok is None else float(ok) for ok in _correct(completions, answer)]


def cosine_length(
    completions,
    answer,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    max_len: int = 1000,
    **kwargs,
) -> list[float | None]:
    """Open-R1's cosine-scaled reward: correct answers earn more when short, wrong ones lose less when long."""

    def scaled(c, ok: bool) -> float:
        cosine = math.cos(min(1.0, len(completion_text(c)) / max_len) * math.pi)
        lo, hi = (min_value_correct, max_value_correct) if ok else (max_value_wrong, min_value_wrong)
        return lo + 0.5 * (hi - lo) * (1.0 + cosine)

    return [None if ok is None else scaled(c, ok) for c, ok in zip(completions, _correct(completions, answer))]


def kimi_length(completions, answer, **kwargs) -> list[float | None]:
    """Open-R1's len_reward (Kimi 1.5): within the batch, lambda = 0.5 - (len - min) / (max - min);
    correct answers get lambda, wrong ones min(0, lambda); 0 for all when the lengths are equal."""
    correct = _correct(completions, answer)
    lengths = [len(completion_text(c)) for c in completions]
    lo, hi = min(lengths, default=0), max(lengths, default=0)
    if hi == lo:
        return [None if ok is None else 0.0 for ok in correct]
    lams = [0.5 - (n - lo) / (hi - lo) for n in lengths]
    return [None if ok is None else (lam if ok else min(0.0, lam)) for lam, ok in zip(lams, correct)]
