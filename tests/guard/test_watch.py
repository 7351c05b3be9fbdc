"""The live guard (`guard:`): the doctor's rules while training, a safe stop, and the forecast.

Each behaviour runs a real tiny model for a few steps; the config checks import nothing heavy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

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


def _now():
    import datetime as dt

    return dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_forecast_projection_and_line():
    from grpolab.guard.forecast import project

    # step 1 took 5 s (warm-up), steps 2-10 took 1 s each: 1000 steps = 14 s + 990 x 1 s
    f = project([5.0] + [1.0] * 9, 1000, world_size=4, on_gpu=True, now=_now())
    assert f.seconds_per_step == 1.0 and f.elapsed_seconds == 14.0 and f.projected_seconds == 1004.0
    assert f.finish_at == "2026-01-01T12:16:30+00:00"
    assert f.gpu_hours == round(4 * 1004 / 3600, 3)
    assert "1000 steps take ~16m 44s" in f.line() and "GPU-hours (4 GPUs)" in f.line()
    assert project([5.0] + [1.0] * 9, 1000, on_gpu=False, now=_now()).gpu_hours is None
    assert f.for_steps(100, 1, on_gpu=False).projected_seconds == 14.0 + 90.0
    # a run no longer than the timed steps takes the timed steps' share of their time, never more
    for total in range(1, 11):
        projected = f.for_steps(total, 1, on_gpu=False).projected_seconds
        assert projected == pytest.approx(14.0 * total / 10, abs=0.05), total


@pytest.mark.parametrize("seed", range(20))
def test_forecast_rate_ignores_warm_up_and_spikes(seed):
    """Synthetic step times: a true rate, a warm-up step 1 and spikes (another job on the machine)
    on fewer than half the timed steps; the rate is the true one, where a mean would be pulled."""
    import random

    from grpolab.guard.forecast import project

    rng = random.Random(seed)
    rate, k = rng.uniform(0.05, 5.0), rng.randint(4, 30)
    times = [rate * rng.uniform(3, 50)] + [rate] * (k - 1)
    for i in rng.sample(range(1, k), (k - 2) // 2):  # fewer than half the steps 2..k
        times[i] = rate * rng.uniform(2, 20)
    f = project(times, 10 * k, now=_now())
    assert f.seconds_per_step == round(rate, 4)
    assert f.projected_seconds == pytest.approx(sum(times) + rate * 9 * k, abs=0.1)
    mean_rate = (sum(times) - times[0]) / (k - 1)
    assert k < 6 or mean_rate > rate * 1.2  # the mean would have missed by more than 20%


@pytest.mark.parametrize("period", [2, 3, 4])
def test_forecast_rate_over_generation_rounds(period):
    """With `period` optimizer steps per generation round, the round's first step generates (slow)
    and the others reuse its completions (fast): the rate is a whole round's mean, not the median
    of single steps (which would be the fast step's time alone)."""
    from grpolab.guard.forecast import project, step_rate

    slow, fast = 3.0, 1.0
    round_ = [slow] + [fast] * (period - 1)
    times = [9.0] + round_[1:] + round_ * 5  # step 1 (warm-up) generated; then 5 whole rounds
    times[period + 1] = 50.0  # one spike inside a round: the median of the rounds ignores it
    expected = (slow + fast * (period - 1)) / period
    assert step_rate(times, period) == pytest.approx(expected)
    assert step_rate(times, 1) != pytest.approx(expected)  # what a per-step median would have said
    f = project(times, 100 * period, period=period, now=_now())
    assert f.projected_seconds == pytest.approx(sum(times) + expected * (100 * period - len(times)), abs=0.1)


def test_forecast_adds_the_checkpoint_saves_to_come():
    from grpolab.guard.forecast import project, saves_between

    assert saves_between(10, 1000, 500) == 2  # steps 500 and 1000
    assert saves_between(10, 1001, 500) == 3  # and the Trainer's save at the last step
    assert saves_between(10, 1000, 0) == 0 and saves_between(500, 500, 100) == 0
    f = project([4.0, 1.0, 1.0, 1.0], 100, save_seconds=(2.0,), saves_left=3, now=_now())
    assert f.elapsed_seconds == 9.0  # the timed steps and the save among them
    assert f.projected_seconds == 9.0 + 96 * 1.0 + 3 * 2.0
    assert "+ 3 checkpoint save(s)" in f.line()


def test_forecast_excludes_scoring_and_saves_from_the_step_times():
    """The callback's clock: held-out scoring (EvalCallback) and a checkpoint save between two
    steps are not part of the next step's time; the save is timed apart."""
    from types import SimpleNamespace

    from grpolab.train.guard import GuardCallback

    clock = {"t": 0.0, "scoring": 0.0}
    import grpolab.train.guard as module

    real = module.time.perf_counter
    module.time.perf_counter = lambda: clock["t"]
    try:
        cb = GuardCallback(None, 4, Path("."), is_main=False, on_gpu=False, scoring_seconds=lambda: clock["scoring"])
        args = SimpleNamespace(
            save_strategy="steps",
            steps_per_generation=1,
            num_iterations=1,
            gradient_accumulation_steps=1,
            world_size=1,
        )
        state = SimpleNamespace(global_step=0, max_steps=100, save_steps=2)
        cb.on_train_begin(args, state, None)
        for step, (seconds, scoring, save) in enumerate([(5, 0, 0), (1, 7, 3), (1, 0, 0), (1, 30, 0)], 1):
            clock["t"] += seconds + scoring
            clock["scoring"] += scoring  # an evaluation inside this step's interval
            state.global_step = step
            cb.on_step_end(args, state, None)
            if save:
                clock["t"] += save
                cb.on_save(args, state, None)
    finally:
        module.time.perf_counter = real
    f = cb.forecast
    assert cb._steps == [5, 1, 1, 1] and cb._saves == [3]
    assert f.seconds_per_step == 1.0 and f.elapsed_seconds == 11.0
    assert f.saves_left == 48 and f.projected_seconds == 11.0 + 96 + 48 * 3.0


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


def test_findings_reach_every_report_to_tracker(tiny_gpt2, fast_config, train, tmp_path):
    """A tracker other than WandB (TensorBoard, installed with the dev tools) gets the finding at
    its step through the Trainer's log path, as `guard/<kind>`: 1 for warn, 2 for stop."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    guard = {**QUICK_GUARD, "constant_reward": "warn", "no_learning_signal": "stop", "forecast_after": 0}
    extra = {"training": {"max_steps": 8}, "guard": guard, "logging": {"report_to": ["tensorboard"]}}
    result = train("--config", fast_config(tiny_gpt2, extra))
    assert result.code == 3, result
    found = {}
    for events in result.run_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent)).Reload()
        for tag in acc.Tags()["scalars"]:
            if "guard/" in tag:
                found[tag.split("guard/", 1)[1]] = [(e.step, e.value) for e in acc.Scalars(tag)]
    info = _json(result.run_dir / "run_info.json")
    expected = {f["kind"]: [(f["step"], 2.0 if f["action"] == "stop" else 1.0)] for f in info["guard"]["findings"]}
    assert expected and found == expected


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


@pytest.mark.parametrize("after, max_steps", [(50, 5), (10, 2), (3, 200)])
def test_probe_forecast_of_a_run_shorter_than_the_timed_steps_times_the_run_itself(
    tiny_gpt2, fast_config, capsys, after, max_steps
):
    """`guard.forecast_after` larger than the run: the run is timed whole, and its projection is the
    time those steps took, not the probe's own time for `forecast_after` steps."""
    guard = {**QUICK_GUARD, "forecast_after": after}
    config = fast_config(tiny_gpt2, {"training": {"max_steps": max_steps}, "guard": guard})
    assert main(["probe", str(config), "--forecast", "--json"]) == 0
    forecast = json.loads(capsys.readouterr().out)
    timed = min(after, max_steps)
    assert forecast["total_steps"] == max_steps and forecast["after_step"] == timed
    if timed == max_steps:  # the whole run was timed: its time is the projection
        assert forecast["projected_seconds"] == pytest.approx(forecast["elapsed_seconds"], abs=0.1)
    else:
        assert forecast["projected_seconds"] > forecast["elapsed_seconds"] > 0


def test_probe_forecast_with_no_forecast_configured_says_so(tiny_gpt2, fast_config, capsys):
    config = fast_config(tiny_gpt2, {"guard": {**QUICK_GUARD, "forecast_after": 0}})
    assert main(["probe", str(config), "--forecast"]) == 2
    err = capsys.readouterr().err
    assert "guard.forecast_after: is 0 (no forecast)" in err and "--set guard.forecast_after=10" in err
    fixed = ["probe", str(config), "--forecast", "--set", "guard.forecast_after=2"]
    assert main(fixed) == 0  # the fix the error gives


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
