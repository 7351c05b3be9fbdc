"""`grpolab train ...`: the same options as `python training/grpo_training.py`."""

from __future__ import annotations

from grpolab.train.request import TrainRequest


def register(sub) -> None:
    train = sub.add_parser("train", help="train with GRPO (TRL) from a resolved config")
    TrainRequest.add_arguments(train)
    train.set_defaults(func=run)


def run(args) -> int:
    from grpolab.train.pipeline import run_from_args  # imports torch/trl: only here

    return run_from_args(args)
