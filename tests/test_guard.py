"""The live guard (`guard:`): the doctor's rules while training, a safe stop, and the forecast.

Each behaviour runs a real tiny model for a few steps; the config checks import nothing heavy."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, child_env, read_jsonl

from grpolab.cli.main import main

# A short run of the tiny random model: numeric_match is 0 for every completion (it cannot add).
QUICK_GUARD = {"min_steps": 3, "window": 3, "forecast_after": 2}


def _json(path):
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- config only
def test_guard_defaults_are_the_doctors_thresholds():
    from grpolab.config.schema import GuardThresholds
    from grpolab.tune.thresholds import THRESHOLDS

    mine = GuardThresholds().model_dump()
    shared = {name: value for name, value in mine.items() if name in THRESHOLDS}
    assert set(mine) - set(shared) == {"weight_growth"}  # the guard's own: weights are only seen live
    assert shared == {name: THRESHOLDS[name].value for name in shared}


def test_guard_rules_and_config_commands_import_no_torch():
    code = (
        "import sys, grpolab.guard.watch, grpolab.guard.forecast, grpolab.guard.recorded;"
        "from grpolab.cli.main import main; main(['config', 'explain', '--key', 'guard.divergence']);"
        "bad = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]; assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "warn, stop, off" in done.stdout.replace("one of: ", "")


def test_bad_guard_value_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("guard:\n  no_learning_signal: stopp\n")
    assert main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: guard.no_learning_signal" in err and "'warn', 'stop' or 'off'" in err
    assert "Fix: set `guard.no_learning_signal: stop`" in err


def test_forecast_projection_and_line():
    import datetime as dt

    from grpolab.guard.forecast import project

    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    # step 1 took 5 s (warm-up), steps 2-10 took 1 s each: 1000 steps = 14 s + 990 x 1 s
    f = project(10, 1000, 5.0, 14.0, world_size=4, on_gpu=True, now=now)
    assert f.seconds_per_step == 1.0 and f.projected_seconds == 1004.0
    assert f.finish_at == "2026-01-01T12:16:30+00:00"
    assert f.gpu_hours == round(4 * 1004 / 3600, 3)
    assert "1000 steps take ~16m 44s" in f.line() and "GPU-hours (4 GPUs)" in f.line()
    assert project(10, 1000, 5.0, 14.0, on_gpu=False, now=now).gpu_hours is None
    assert f.for_steps(100, 1, on_gpu=False).projected_seconds == 14.0 + 90.0


# --------------------------------------------------------------------------- training runs
def test_constant_reward_stops_with_a_checkpoint_and_says_why(tiny_gpt2, fast_config, train, capsys, tmp_path):
    from transformers import AutoModelForCausalLM

    config = fast_config(tiny_gpt2, {"training": {"max_steps": 30}, "guard": QUICK_GUARD})
    result = train("--config", config)
    assert result.code == 3, result
    out, run_dir = result.out, result.run_dir
    assert out.count("guard: stopping the run at step 3: constant_reward") == 1
    assert "      why       every completion gets the same reward" in out  # the doctor's format
    assert out.count("forecast     30 steps take ~") == 1

    info, summary = _json(run_dir / "run_info.json"), _json(run_dir / "summary.json")
    assert info["status"] == summary["status"] == "stopped" and info["exit_code"] == 3
    assert info["guard"]["stopped"]["kind"] == summary["guard"]["stopped"]["kind"] == "constant_reward"
    assert "stopped by the guard at step 3: constant_reward" in info["error"]
    assert info["forecast"]["total_steps"] == 30 and info["forecast"]["actual_seconds"] > 0
    recorded = [r["guard"] for r in read_jsonl(run_dir / "metrics.jsonl") if "guard" in r]
    assert [g["kind"] for g in recorded if g["action"] == "stop"] == ["constant_reward"]
    AutoModelForCausalLM.from_pretrained(run_dir / "checkpoint-3")  # the stop saved a loadable checkpoint

    # runs list, compare and doctor say why it stopped.
    capsys.readouterr()
    assert main(["runs", "list", str(run_dir.parent)]) == 0
    assert "stopped (constant_reward)" in capsys.readouterr().out
    assert main(["compare", str(run_dir), "--out", str(tmp_path / "compare.png")]) == 0
    assert "stopped (constant_reward)" in capsys.readouterr().out
    assert main(["doctor", str(run_dir)]) == 0
    assert "  stopped by the guard at step 3: constant_reward" in capsys.readouterr().out


def test_warn_only_prints_each_finding_once_and_the_run_finishes(tiny_gpt2, fast_config, train):
    guard = {**QUICK_GUARD, "constant_reward": "warn", "no_learning_signal": "off", "forecast_after": 0}
    wandb = {"report_to": ["wandb"]}  # offline (conftest): the alert path must not break the run
    config = fast_config(tiny_gpt2, {"training": {"max_steps": 6}, "guard": guard, "logging": wandb})
    result = train("--config", config)
    assert result.code == 0, result
    assert list((result.run_dir / "wandb").glob("offline-run-*"))
    assert result.out.count("guard: warning at step 3: constant_reward") == 1
    assert "guard: stopping" not in result.out and "forecast  " not in result.out
    info = _json(result.run_dir / "run_info.json")
    assert info["status"] == "finished" and info["guard"]["stopped"] is None
    assert "constant_reward" in [f["kind"] for f in info["guard"]["findings"]]


def test_huge_learning_rate_stops_as_divergence_before_any_nan(tiny_gpt2, fast_config, train, tmp_path):
    from transformers import AutoModelForCausalLM

    extra = {
        "training": {"max_steps": 12, "learning_rate": 1000.0, "per_device_train_batch_size": 8},
        "grpo": {"num_generations": 4, "generation_batch_size": 8},
        "generation": {"max_completion_length": 12},
        "rewards": [{"name": "length_penalty"}, {"name": "tag_count", "weight": 0.5}],
        "guard": {**QUICK_GUARD, "constant_reward": "off", "no_learning_signal": "off"},
    }
    result = train("--config", fast_config(tiny_gpt2, extra))
    assert result.code == 3, result
    info = _json(result.run_dir / "run_info.json")
    stop = info["guard"]["stopped"]
    assert stop["kind"] == "divergence" and "weight norm" in stop["evidence"][0]
    losses = [r["loss"] for r in read_jsonl(result.run_dir / "metrics.jsonl") if "loss" in r]
    assert losses and all(math.isfinite(v) for v in losses)
    model = AutoModelForCausalLM.from_pretrained(result.run_dir / f"checkpoint-{stop['step']}")
    assert all(p.isfinite().all() for p in model.parameters())

    # doctor --write-config writes the next experiment with the stop's edit (a far smaller step).
    nxt = tmp_path / "next.yaml"
    assert main(["doctor", str(result.run_dir), "--write-config", str(nxt)]) == 0
    changed = [line for line in nxt.read_text().splitlines() if "# Changed from 1000.0: divergence" in line]
    assert len(changed) == 1 and changed[0].strip().startswith("learning_rate: ")


def test_probe_forecast_times_the_first_steps_and_keeps_nothing(tiny_gpt2, fast_config, capsys, tmp_path):
    config = fast_config(tiny_gpt2, {"training": {"max_steps": 200}, "guard": QUICK_GUARD})
    assert main(["probe", str(config), "--forecast"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("forecast     200 steps take ~") and "over 2 steps; nothing was kept" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_two_cpu_ranks_stop_together(tiny_gpt2, fast_config, tmp_path):
    extra = {"mode": "cluster", "cluster": {"device": "cpu", "num_processes": 2}, "training": {"max_steps": 30}}
    extra["grpo"] = {"generation_batch_size": "auto"}  # 2 completions per rank
    config = fast_config(tiny_gpt2, {**extra, "guard": QUICK_GUARD})
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "training" / "grpo_training.py"), "--config", str(config)],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    info = _json(run_dir / "run_info.json")
    assert info["world_size"] == 2 and info["status"] == "stopped"
    assert info["guard"]["stopped"]["kind"] == "constant_reward" and info["global_step"] == 3
    assert done.stdout.count("guard: stopping the run") == 1  # rank 0 decides and reports
    assert (run_dir / "checkpoint-3").is_dir()


def test_a_reward_collapse_alone_warns_and_hard_evidence_still_stops(tmp_path):
    """Early batch means are noisy: a divergence seen only as a fallen reward warns; blown-up
    weights later in the same run still stop it (no torch: the Watcher is fed numbers)."""
    from grpolab.config import GRPOConfigLoader
    from grpolab.guard.watch import Watcher

    loader = GRPOConfigLoader.from_dict({"guard": {"min_steps": 1}})
    watcher = Watcher(loader.config.guard, tmp_path, None)
    rewards = [0.1, 0.5, 0.2, 0.1, 0.2, 0.1, 0.0, 0.1, 0.0, 0.0]
    verdicts = []
    for step, reward in enumerate(rewards, 1):
        logs = {"reward": reward, "reward_std": 0.3, "frac_reward_zero_std": 0.2, "loss": 0.0}
        verdicts += watcher.observe(step, logs, weight_growth=1.0)
    assert [(v.kind, v.action) for v in verdicts] == [("divergence", "warn")]
    hard = watcher.observe(11, {"reward": 0.0, "reward_std": 0.3, "frac_reward_zero_std": 0.2}, weight_growth=1e4)
    assert [(v.kind, v.action) for v in hard] == [("divergence", "stop")] and watcher.stop is hard[0]
    assert "weight norm" in hard[0].finding.evidence[0]
