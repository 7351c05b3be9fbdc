"""`grpolab train ...`: the same options as `python training/grpo_training.py`."""

from __future__ import annotations


def register(sub) -> None:
    from grpolab.train.args import add_train_args

    train = sub.add_parser("train", help="train with GRPO (TRL) from a resolved config")
    add_train_args(train)
    train.set_defaults(func=run)


def run(args) -> int:
    from grpolab.train.pipeline import run_from_args  # imports torch/trl: only here

    return run_from_args(args)
