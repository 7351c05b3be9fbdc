"""`data.eval_every_steps`: held-out accuracy scored during training, on a clock that leaves the
scoring out, written to metrics.jsonl (and WandB, see test_train_wandb.py)."""

from __future__ import annotations

import json
import time

import pytest


@pytest.mark.slow
def test_held_out_accuracy_is_scored_every_n_steps(tiny_gpt2, fast_config, train, jsonl):
    cfg = fast_config(
        tiny_gpt2,
        {"data": {"eval_split": "eval", "eval_samples": 6, "eval_every_steps": 2}, "training": {"max_steps": 5}},
    )
    result = train("--config", cfg)
    assert result.code == 0, result.err
    assert "6 prompts [eval], greedy, evaluated before, after and every 2 steps" in result.out
    curve = [r for r in jsonl(result.run_dir / "metrics.jsonl") if "eval/accuracy" in r]
    assert [r["step"] for r in curve] == [0, 2, 4, 5]  # before training, every 2 steps, and the final model
    assert all(
        0.0 <= r["eval/accuracy"] <= 1.0 and r["eval/accuracy"] * 6 == round(r["eval/accuracy"] * 6) for r in curve
    )
    seconds = [r["eval/train_seconds"] for r in curve]
    assert seconds[0] == 0 < seconds[1] < seconds[2] <= seconds[3]  # before training, no training time yet
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["eval"]["prompts"] == 6 and summary["final"]["eval/accuracy"] == curve[-1]["eval/accuracy"]


def test_scoring_time_is_left_out_of_the_training_clock(tmp_path):
    from transformers import TrainerControl, TrainerState

    from grpolab.train.callbacks import HeldOutAccuracyCallback

    def slow_score(model):
        time.sleep(0.3)
        return 0.25

    metrics = tmp_path / "metrics.jsonl"
    callback = HeldOutAccuracyCallback(slow_score, every_steps=2, run_dir=tmp_path)
    state, control = TrainerState(), TrainerControl()
    callback.on_train_begin(None, state, control)
    for step in range(1, 6):
        state.global_step = step
        callback.on_step_end(None, state, control, model=object())
    assert [p["step"] for p in callback.curve] == [2, 4]
    # Two 0.3 s scorings happened, but the clock at step 4 counts only the (near-zero) training time.
    assert callback.curve[1]["eval/train_seconds"] < 0.2
    written = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [(r["step"], r["eval/accuracy"]) for r in written] == [(2, 0.25), (4, 0.25)]


def test_every_rank_scores_but_only_rank_zero_records(tmp_path):
    from transformers import TrainerControl, TrainerState

    from grpolab.train.callbacks import HeldOutAccuracyCallback

    calls = []
    callback = HeldOutAccuracyCallback(lambda m: calls.append(m) or 0.5, every_steps=1, run_dir=tmp_path)
    state = TrainerState(is_world_process_zero=False)
    callback.on_train_begin(None, state, TrainerControl())
    state.global_step = 1
    callback.on_step_end(None, state, TrainerControl(), model="model")
    assert calls == ["model"] and callback.curve == [] and not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.slow
def test_run_info_keeps_the_exact_grpo_config_arguments(tiny_gpt2, fast_config, train):
    from trl import GRPOConfig

    result = train("--config", fast_config(tiny_gpt2, {"training": {"learning_rate": 3.0e-5}}))
    assert result.code == 0, result.err
    args = json.loads((result.run_dir / "run_info.json").read_text())["trl_args"]
    assert args["output_dir"] == str(result.run_dir) and args["run_name"] == result.run_dir.name
    assert args["learning_rate"] == 3.0e-5 and args["max_steps"] == 2 and args["report_to"] == "none"
    rebuilt = GRPOConfig(**args)  # a plain TRL script can rebuild the run's config from it
    assert rebuilt.num_generations == 2 and rebuilt.generation_batch_size == 2
