"""The same GRPO run written by hand with TRL: the baseline grpolab is measured against.

    python bench/plain_trl_grpo.py GRPOCONFIG.json MODEL_DIR DATA.jsonl

GRPOCONFIG.json holds the keyword arguments of trl.GRPOConfig (bench/overhead.py writes the
ones grpolab resolves, so both runs use every GRPOConfig value alike).
"""

import json
import re
import sys

from datasets import load_dataset
from transformers import set_seed
from trl import GRPOConfig, GRPOTrainer


def numeric_match(completions, answer, **kwargs):
    """1.0 when the first number in the completion equals the answer."""
    found = [re.search(r"-?\d+(\.\d+)?", c) for c in completions]
    return [float(m is not None and float(m.group()) == float(a)) for m, a in zip(found, answer)]


config_file, model_dir, data_file = sys.argv[1:4]
args = GRPOConfig(**json.load(open(config_file)))
set_seed(args.seed)
dataset = load_dataset("json", data_files=data_file, split="train")
trainer = GRPOTrainer(model=model_dir, reward_funcs=numeric_match, args=args, train_dataset=dataset)
result = trainer.train()
trainer.save_model(f"{args.output_dir}/model")
print("RESULT " + json.dumps({"global_step": result.global_step, **result.metrics}))
