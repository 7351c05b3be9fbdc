"""The `eval:` section: pass@k and mean@k by hand, prompts through the training path, metrics in
metrics.jsonl / WandB / summary.json, the best model kept, and early stops at the right step."""

from __future__ import annotations

import json

import pytest
from conftest import read_jsonl

from grpolab.sampling import sampler
from grpolab.sampling.sampler import Completion, Samples
from grpolab.train.evaluate import EvalSettings, Evaluator, pass_at_k


def test_pass_at_k_matches_the_hand_computed_estimator():
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 3, 4) == pytest.approx(1 - 35 / 210)  # 1 - C(7,4)/C(10,4)


def test_evaluator_metrics_by_hand(monkeypatch):
    """Two prompts, four samples each: 1 and 3 of them pass."""
    canned = ["5", "x", "x", "x", "7", "7", "7", "y"]

    def canned_sample(model, tokenizer, prompts, s):
        flat = [Completion(t, [0], ended=i < 7) for i, t in enumerate(canned[: len(prompts) * s.samples])]
        return Samples([flat[i : i + s.samples] for i in range(0, len(flat), s.samples)], 0.0)

    monkeypatch.setattr(sampler, "sample", canned_sample)

    def exact(prompts, completions, answer, **kwargs):
        return [float(c == a) for c, a in zip(completions, answer)]

    rows = [{"prompt": "2+3=", "answer": "5"}, {"prompt": "3+4=", "answer": "7"}]
    settings = EvalSettings(4, 1.0, 4, 8, "exact", 1.0)
    scores = Evaluator(rows, None, [exact], ["exact"], [2.0], settings)(model=None)
    assert scores["eval/rewards/exact"] == pytest.approx(4 / 8)
    assert scores["eval/reward"] == pytest.approx(2.0 * 4 / 8)  # the weighted sum
    assert scores["eval/mean@4"] == pytest.approx((1 / 4 + 3 / 4) / 2)
    assert scores["eval/pass@4"] == 1.0 and scores["eval/pass@1"] == pytest.approx(0.5)
    assert scores["eval/truncated"] == pytest.approx(1 / 8)


COUNTER_REWARD = """
import os

SCORES = [float(x) for x in os.environ["EVAL_SCORES"].split(",")]
calls = [0]


def scripted(completions, **kwargs):
    # One score per evaluation point, in order: the held-out score rises, then falls.
    value = SCORES[min(calls[0], len(SCORES) - 1)]
    calls[0] += 1
    return [value] * len(completions)
"""


def _eval_run(tmp_path, fast_config, train, monkeypatch, scores: str, eval_section: dict):
    (tmp_path / "scripted.py").write_text(COUNTER_REWARD)
    monkeypatch.setenv("EVAL_SCORES", scores)
    extra = {
        "training": {"max_steps": 8, "save_steps": 1000},
        "data": {"eval_split": "eval", "eval_samples": 4},
        "eval": {"every_steps": 2, "rewards": [{"name": f"{tmp_path}/scripted.py:scripted"}], **eval_section},
    }
    return train("--config", fast_config(None, extra))


@pytest.mark.slow
def test_keep_best_keeps_the_model_of_the_best_point(tmp_path, fast_config, train, monkeypatch):
    # Points at steps 0 (before training), 2, 4, 6, 8: the best is step 4.
    result = _eval_run(
        tmp_path, fast_config, train, monkeypatch, "0.1,0.3,0.9,0.4,0.2", {"keep_best": {"metric": "eval/reward"}}
    )
    assert result.code == 0, result
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["eval"]["best_model"] == {"metric": "eval/reward", "value": 0.9, "step": 4}
    assert (result.run_dir / "best" / "config.json").is_file() and not list(result.run_dir.glob("best-step*"))
    assert summary["eval"]["best"]["eval/reward"] == {"value": 0.9, "step": 4}
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(result.run_dir / "best")


@pytest.mark.slow
def test_stop_at_stops_at_the_step_that_reached_the_value(tmp_path, fast_config, train, monkeypatch):
    result = _eval_run(
        tmp_path,
        fast_config,
        train,
        monkeypatch,
        "0.1,0.5,0.95,1.0",
        {"stop_at": {"metric": "eval/reward", "value": 0.9}},
    )
    assert result.code == 0, result
    info = json.loads((result.run_dir / "run_info.json").read_text())
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 4
    assert (
        "eval/reward reached 0.95" in summary["eval"]["stopped_early"]
        and "at step 4" in summary["eval"]["stopped_early"]
    )
    assert "stopped early" in result.out


@pytest.mark.slow
def test_chat_prompts_from_a_jsonl_file_are_evaluated_every_n_steps(
    tmp_path, tiny_llama, fast_config, train, monkeypatch
):
    from wandb_offline import read_records

    monkeypatch.chdir(tmp_path)
    rows = [{"question": [{"role": "user", "content": f"{a}+{a}="}], "solution": str(2 * a)} for a in range(10, 40)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:6]))
    cfg = fast_config(
        tiny_llama,
        {
            "data": {
                "dataset": "train.jsonl",
                "columns": {"question": "prompt", "solution": "answer"},
                "test_size": 6,
            },
            "training": {"max_steps": 4},
            "eval": {"every_steps": 2, "samples_per_prompt": 4, "temperature": 1.0},
            "logging": {"report_to": ["wandb"]},
        },
    )
    result = train("--config", cfg)
    assert result.code == 0, result
    points = [r for r in read_jsonl(result.run_dir / "metrics.jsonl") if "eval/reward" in r]
    assert [p["step"] for p in points] == [0, 2, 4]
    assert all({"eval/pass@4", "eval/mean@4", "eval/pass@1", "eval/length"} <= set(p) for p in points)
    summary = json.loads((result.run_dir / "summary.json").read_text())["eval"]
    assert summary["before"]["eval/pass@4"] >= summary["before"]["eval/pass@1"]
    assert {"before", "after", "best"} <= set(summary) and summary["prompts"] == 6
    (wandb_file,) = (result.run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    history = [r.history for r in read_records(wandb_file) if r.WhichOneof("record_type") == "history"]
    logged = {item.nested_key[0] if item.nested_key else item.key for h in history for item in h.item}
    assert {"eval/reward", "eval/pass@4", "eval/mean@4"} <= logged


@pytest.mark.slow
def test_sampled_completions_are_kept_in_the_run_directory(tmp_path, fast_config, train, capsys):
    from grpolab.cli.main import main

    result = train(
        "--config",
        fast_config(
            None,
            {"training": {"max_steps": 4}, "logging": {"save_completions": {"every_steps": 2, "max_per_step": 1}}},
        ),
    )
    assert result.code == 0, result
    rows = read_jsonl(result.run_dir / "completions.jsonl")
    assert [r["step"] for r in rows] == [2, 4]  # every 2 steps, at most 1 each
    assert set(rows[0]) == {"step", "prompt", "completion", "rewards", "advantage", "length", "truncated"}
    assert "numeric_match" in rows[0]["rewards"] and rows[0]["length"] <= 4
    capsys.readouterr()
    assert main(["runs", "show", str(result.run_dir), "--completions", "--step", "4"]) == 0
    assert rows[1]["completion"].strip()[:3] in capsys.readouterr().out


def test_held_out_prompts_that_all_get_dropped_are_an_error_before_training(tmp_path, tiny_gpt2, fast_config, train):
    """Every eval prompt is longer than the model's context: refused with the key, nothing written."""
    rows = [{"prompt": "1+" * 40 + "1=", "answer": "41"} for _ in range(5)]
    (tmp_path / "long_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = fast_config(tiny_gpt2, {"eval": {"dataset": str(tmp_path / "long_eval.jsonl"), "split": "train"}})
    result = train("--config", cfg)
    assert result.code == 2, result
    assert "eval.max_completion_length: no held-out prompt fits: the shortest prompt has" in result.err
    assert "the model's context of 64" in result.err and "use shorter prompts" in result.err
    assert not (tmp_path / "runs").exists()
