"""The tuning assistant on real training runs of the embedded demo model, each a few steps through
`python -m grpolab train`, engineered to show one problem:

  healthy   the demo preset as shipped: doctor reports nothing; probe predicts its frac_reward_zero_std
  constant  a reward that is always 0, and max_completion_length 2 (answers need 3-4 tokens):
            constant_reward (with a sample of the saved completions) and clipped_completions;
            --write-config's next experiment validates and trains
  hugelr    learning rate 1.0 with a KL penalty: divergence, kl_growth, entropy_collapse, the range warning
  hack      a reward for longer completions, scored against held-out accuracy: reward_hacking

Slow: about two minutes on two busy CPU cores.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest
from conftest import PYTHON, REPO_ROOT, child_env

from grpolab.config import GRPOConfigLoader, preset_path
from grpolab.tune import doctor

pytestmark = pytest.mark.slow

DEMO = preset_path("local").with_name("grpo_demo.yaml")
COMMON = [
    "--set",
    "logging.report_to=[none]",
    "--set",
    "training.logging_steps=1",
    "--set",
    "training.save_steps=1000",
]
NO_EVAL = ["--set", "data.eval_split=null", "--set", "data.eval_every_steps=0"]


def _train(out, *args, config=DEMO):
    """`grpolab train` in this process (each subprocess would pay ~5 s of imports)."""
    import argparse

    from grpolab.train.pipeline import run_from_args
    from grpolab.train.request import TrainRequest

    parser = argparse.ArgumentParser(prog="grpolab train")
    TrainRequest.add_arguments(parser)
    argv = ["--config", str(config), "--output-dir", str(out), *COMMON, *args]
    assert run_from_args(parser.parse_args(argv)) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune_runs")
    rewards = root / "engineered_rewards.py"
    rewards.write_text(
        textwrap.dedent(
            """
            def always_zero(completions, **kwargs):
                return [0.0 for _ in completions]


            def longer_is_better(completions, **kwargs):
                return [len(c) / 8 for c in completions]
            """
        )
    )
    made = {
        "healthy": _train(
            root / "healthy", "--set", "training.max_steps=16", "--set", "data.eval_samples=50",
            "--set", "data.eval_every_steps=0",
        ),
        "constant": _train(
            root / "constant", "--set", "training.max_steps=3", *NO_EVAL,
            "--set", f"rewards=[{{name: {rewards}:always_zero}}]",
            "--set", "grpo.log_completions=true", "--set", "generation.max_completion_length=2",
        ),
        "hugelr": _train(
            root / "hugelr", "--set", "training.max_steps=8", *NO_EVAL,
            "--set", "training.learning_rate=1.0", "--set", "grpo.beta=0.04",
        ),
        "hack": _train(
            root / "hack", "--set", "training.max_steps=12", "--set", "data.eval_samples=100",
            "--set", "data.eval_every_steps=0", "--set", "generation.max_completion_length=8",
            "--set", "training.learning_rate=1e-3", "--set", f"rewards=[{{name: {rewards}:longer_is_better}}]",
        ),
    }  # fmt: skip
    return root, made


def _findings(run_dir):
    return {f.id: f for f in doctor.diagnose(doctor.load_run(run_dir))}


def test_healthy_demo_run_raises_no_false_alarm(runs):
    _, made = runs
    assert _findings(made["healthy"]) == {}


def test_constant_reward_and_clipped_completions_then_the_next_config_trains(runs, tmp_path):
    root, made = runs
    found = _findings(made["constant"])
    assert {"constant_reward", "clipped_completions"} <= set(found)
    constant = found["constant_reward"]
    assert constant.title == "the reward is 0 for every completion"
    assert any(e.startswith("sample:") and "always_zero" in e for e in constant.evidence)
    clipped = found["clipped_completions"]
    assert clipped.edits == {"generation.max_completion_length": 4}
    run = doctor.load_run(made["constant"])
    path, applied = doctor.write_next_config(run, [clipped], tmp_path / "next.yaml")
    assert [f.id for f in applied] == ["clipped_completions"]
    text = path.read_text()
    assert "max_completion_length: 4  # Changed from 2: clipped_completions" in text
    assert "\nbase: " in text and "grpo_demo" in text  # minimal: the run's config file is the base
    assert GRPOConfigLoader(config_path=path).config.generation.max_completion_length == 4
    # the next experiment trains (2 steps)
    nxt = _train(tmp_path / "next_run", "--set", "training.max_steps=2", config=path)
    records = [json.loads(line) for line in (nxt / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert any("reward" in r for r in records)


def test_huge_learning_rate_diverges(runs):
    _, made = runs
    found = _findings(made["hugelr"])
    assert {"divergence", "kl_growth", "entropy_collapse", "range_learning_rate"} <= set(found)
    assert found["divergence"].edits == {"training.learning_rate": 5e-4}


def test_length_reward_is_reward_hacking(runs):
    _, made = runs
    found = _findings(made["hack"])
    assert "reward_hacking" in found
    assert found["reward_hacking"].edits == {"grpo.beta": 0.04}


def test_probe_predicts_the_zero_spread_fraction_of_the_first_steps(runs, tmp_path):
    _, made = runs
    out = subprocess.run(
        [PYTHON, "-m", "grpolab", "probe", str(DEMO), "--prompts", "256", "--json",
         "--write-filtered", str(tmp_path / "mixed.jsonl")],
        cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    records = [json.loads(line) for line in (made["healthy"] / "metrics.jsonl").read_text().splitlines()]
    trained = [r["frac_reward_zero_std"] for r in records if "frac_reward_zero_std" in r]
    assert len(trained) == 16
    measured = sum(trained) / len(trained)
    print(f"probe zero-spread {report['zero_spread_fraction']:.3f} vs first 16 training steps {measured:.3f}")
    assert abs(report["zero_spread_fraction"] - measured) <= 0.10
    assert report["truncation_rate"] < 0.05 and 3 <= report["mean_completion_length"] <= 4
    # --write-filtered: a valid dataset of the mixed prompts, which a config can train on
    rows = [json.loads(line) for line in (tmp_path / "mixed.jsonl").read_text().splitlines()]
    assert len(rows) == report["mixed_prompts"] > 0
    assert all(set(r) == {"prompt", "answer"} for r in rows)
    cfg = GRPOConfigLoader(
        config_path=DEMO,
        overrides=[f"data.dataset={tmp_path / 'mixed.jsonl'}", "data.eval_split=null", "data.eval_every_steps=0"],
    ).config
    from grpolab.train.data import load_split

    assert len(load_split(cfg.data, cfg.data.split, None, seed=0)) == len(rows)
