"""The demo task trained with TRL's GRPOConfig defaults: the baseline of bench/time_to_accuracy.py.

Same model (the embedded demo model), data (the built-in addition train split), reward and seed
as `configs/grpo_demo.yaml`; every GRPOConfig value is TRL's default except the two this machine
and model force: `use_cpu=True` (TRL's default bf16=True raises without it on a machine with no
GPU) and `max_completion_length` = the model's 32 positions minus the prompt (TRL's 512 would run
past the position table). Held-out accuracy is scored with grpolab's callback, the same one the
grpolab run uses, and training stops after `--budget` seconds of training time.

    python bench/trl_defaults_grpo.py --seed 0 --budget 60 --eval-every 10 --out DIR
"""

import argparse
import json
import re
import time

from datasets import Dataset
from transformers import TrainerCallback, set_seed
from trl import GRPOConfig, GRPOTrainer

from grpolab.demo.addition import greedy_accuracy, make_addition_rows, split_size
from grpolab.demo.tiny_model import RECIPE, demo_model_path
from grpolab.train.callbacks import HeldOutAccuracyCallback


def numeric_match(completions, answer, **kwargs):
    """1.0 when the first number in the completion equals the answer."""
    found = [re.search(r"-?\d+(\.\d+)?", c) for c in completions]
    return [float(m is not None and float(m.group()) == float(a)) for m, a in zip(found, answer)]


class StopAfter(TrainerCallback):
    """End training once `budget` seconds of training (not scoring) time have passed."""

    def __init__(self, budget, held_out):
        self.budget, self.held_out, self.started = budget, held_out, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        scoring = self.held_out.scoring_seconds
        if time.perf_counter() - self.started - scoring >= self.budget:
            control.should_training_stop = True


parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--budget", type=float, default=60.0)
parser.add_argument("--eval-every", type=int, default=10)
parser.add_argument("--eval-samples", type=int, default=500)
parser.add_argument("--out", required=True)
opts = parser.parse_args()

model_dir = str(demo_model_path())
prompt_tokens = len("12+34=")  # every prompt: two 2-digit operands, one character per token
args = GRPOConfig(
    output_dir=opts.out, seed=opts.seed, use_cpu=True, max_completion_length=RECIPE["n_positions"] - prompt_tokens
)
set_seed(args.seed)
train = Dataset.from_list(make_addition_rows(split_size("train"), seed=opts.seed, split="train"))
held_out_rows = make_addition_rows(opts.eval_samples, seed=opts.seed + 1, split="eval")  # the rows grpolab scores
trainer = GRPOTrainer(model=model_dir, reward_funcs=numeric_match, args=args, train_dataset=train)
score = lambda model: greedy_accuracy(model, trainer.processing_class, held_out_rows, max_new_tokens=4)  # noqa: E731
held_out = HeldOutAccuracyCallback(score, opts.eval_every)
trainer.add_callback(held_out)
trainer.add_callback(StopAfter(opts.budget, held_out))
before = score(trainer.model)
trainer.train()
logged = [(r["step"], r["num_tokens"]) for r in trainer.state.log_history if "num_tokens" in r]
print(
    "RESULT "
    + json.dumps(
        {
            "accuracy_before": before,
            "curve": held_out.curve,
            "global_step": trainer.state.global_step,
            "num_tokens": logged[-1],
            "config": {
                k: v
                for k, v in args.to_dict().items()
                if k
                in (
                    "learning_rate",
                    "per_device_train_batch_size",
                    "num_generations",
                    "max_completion_length",
                    "gradient_checkpointing",
                    "bf16",
                    "loss_type",
                    "beta",
                )
            },
        }
    )
)
