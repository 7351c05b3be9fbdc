"""Offline demo: a tiny character-level GPT-2 that half-solves two-digit addition, for GRPO to improve.

`demo_model_path()` builds (once, ~30 s on 2 cores) and caches the model; the
addition task supplies train/held-out rows and the greedy accuracy metric.
"""

from grpolab.demo.addition import greedy_accuracy, make_addition_rows, parse_number
from grpolab.demo.tiny_model import build_tokenizer, demo_model_path

__all__ = ["build_tokenizer", "demo_model_path", "greedy_accuracy", "make_addition_rows", "parse_number"]
