"""Ctrl-C / SIGTERM (real processes), and --resume: it continues from the last checkpoint with
the run's resolved config to the same final step as an uninterrupted run, and refuses a
different config unless --force."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import time

import pytest
from conftest import PYTHON, REPO_ROOT, child_env, fast_settings

MAX_STEPS = 20
# A reward that takes 0.1 s: the run lasts ~2 s, long enough to be signalled mid-way.
SLOW_REWARD = (
    "import time\n\ndef slow(completions, **kw):\n    time.sleep(0.1)\n    return "
    "[float(i % 2) for i in range(len(completions))]\n"
)


def _settings(folder) -> dict:
    reward = folder / "slow_reward.py"
    reward.write_text(SLOW_REWARD)
    return fast_settings(
        None, folder / "runs", {"rewards": [{"name": f"{reward}:slow"}], "training": {"max_steps": MAX_STEPS}}
    )


def _interrupt(folder, model: str, command: list[str], sig: signal.Signals, run_name: str):
    """Start a training process, signal it once its first step is logged, wait for it to end."""
    settings = _settings(folder)
    settings["model"]["name_or_path"] = model
    config = folder / "resume_me.yaml"
    config.write_text(json.dumps(settings))
    run_dir = folder / "runs" / run_name
    log = folder / f"{run_name}.log"  # a file, not a pipe: a full pipe would block the child
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [*command, "--config", str(config), "--run-name", run_name],
            cwd=folder,
            env=child_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.time() + 120
            metrics = run_dir / "metrics.jsonl"
            while not (metrics.exists() and metrics.read_text().strip()):
                assert proc.poll() is None, f"training ended before its first logged step:\n{log.read_text()[-3000:]}"
                assert time.time() < deadline, "no logged step within 120 s"
                time.sleep(0.05)
            proc.send_signal(sig)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = log.read_text()
    return proc.returncode, out, run_dir, config


@pytest.fixture(scope="module")
def interrupted(tiny_gpt2, tmp_path_factory):
    """A run of `python training/grpo_training.py` stopped by SIGTERM after its first logged step."""
    folder = tmp_path_factory.mktemp("sigterm")
    return _interrupt(
        folder, tiny_gpt2, [PYTHON, str(REPO_ROOT / "training" / "grpo_training.py")], signal.SIGTERM, "interrupted"
    )


def _info(run_dir) -> dict:
    return json.loads((run_dir / "run_info.json").read_text())


def _assert_interrupted(code, out, run_dir, expected_code, signal_name):
    assert code == expected_code, out[-3000:]
    info = _info(run_dir)
    step = info["global_step"]
    assert 1 <= step < MAX_STEPS, "the run should have been stopped mid-way"
    assert info["status"] == "interrupted" and info["exit_code"] == expected_code
    assert info["error"] == f"{signal_name}: checkpoint saved at step {step}"
    assert (run_dir / f"checkpoint-{step}").is_dir()
    assert not (run_dir / "model").exists()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert f"{signal_name} received: saving a checkpoint" in out and "run interrupted" in out
    return step


def test_sigterm_saves_a_checkpoint_and_records_interrupted(interrupted):
    code, out, run_dir, _ = interrupted
    _assert_interrupted(code, out, run_dir, 143, "SIGTERM")


def test_ctrl_c_through_grpolab_train(tiny_gpt2, tmp_path):
    code, out, run_dir, _ = _interrupt(
        tmp_path, tiny_gpt2, [PYTHON, "-m", "grpolab.cli.main", "train"], signal.SIGINT, "ctrl_c"
    )
    _assert_interrupted(code, out, run_dir, 130, "SIGINT")


def _copy(run_dir, tmp_path):
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy


def test_resume_reaches_the_same_final_step_as_an_uninterrupted_run(interrupted, tmp_path, train, jsonl, write_config):
    _, _, original, config = interrupted
    run_dir = _copy(original, tmp_path)
    stopped_at = _info(run_dir)["global_step"]
    sha = _info(run_dir)["config_sha256"]
    # As if the process had been killed hard two logged steps after its last checkpoint.
    with (run_dir / "metrics.jsonl").open("a") as handle:
        for step in (stopped_at + 1, stopped_at + 2):
            handle.write(json.dumps({"step": step, "loss": 123.0, "reward": 99.0}) + "\n")

    result = train("--resume", run_dir)
    assert result.code == 0, result
    assert result.run_dir == run_dir  # the same directory, no new one
    info = _info(run_dir)
    assert info["status"] == "finished" and info["global_step"] == MAX_STEPS and len(info["resumed"]) == 1
    assert info["config_sha256"] == sha  # the run's own config, unchanged
    assert info["config_file"] == str(config)  # still the file the run was started from
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] == MAX_STEPS and summary["status"] == "finished"
    assert (run_dir / f"checkpoint-{MAX_STEPS}").is_dir() and (run_dir / "model").is_dir()
    steps = [r["step"] for r in jsonl(run_dir / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, MAX_STEPS + 1)), f"stopped at {stopped_at}: {steps}"  # each step once
    assert summary["best"]["reward"] != 99.0  # the records of the lost steps are gone

    # The same config, uninterrupted, ends at the same step.
    settings = json.loads(config.read_text())
    settings["output_dir"] = str(tmp_path / "uninterrupted")
    straight = train("--config", write_config(settings, "straight.yaml"))
    assert straight.code == 0, straight
    assert _info(straight.run_dir)["global_step"] == info["global_step"]


def test_resume_refuses_a_different_config_unless_forced(interrupted, tmp_path, train):
    _, _, original, _ = interrupted
    run_dir = _copy(original, tmp_path)
    before = (run_dir / "run_info.json").read_text()

    refused = train("--resume", run_dir, "--set", "training.learning_rate=1e-4")
    assert refused.code == 2
    assert "differs from the run's (training.learning_rate: 5e-05 -> 0.0001)" in refused.err
    assert "--force" in refused.err
    assert (run_dir / "run_info.json").read_text() == before  # nothing touched

    forced = train("--resume", run_dir, "--set", "training.learning_rate=1e-4", "--force")
    assert forced.code == 0, forced
    info = _info(run_dir)
    assert info["status"] == "finished" and info["global_step"] == MAX_STEPS
    # The run's record now says what it finished with.
    resolved = (run_dir / "resolved_config.yaml").read_text()
    assert "learning_rate: 1.0e-4" in resolved
    assert info["config_sha256"] == hashlib.sha256(resolved.encode()).hexdigest()


def test_resume_needs_a_run_directory_with_a_checkpoint(interrupted, tmp_path, train):
    not_a_run = train("--resume", tmp_path)
    assert not_a_run.code == 2 and "is not a run directory (no resolved_config.yaml)" in not_a_run.err

    _, _, original, _ = interrupted
    run_dir = _copy(original, tmp_path)
    for checkpoint in run_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    before = (run_dir / "run_info.json").read_text()
    no_checkpoint = train("--resume", run_dir)
    assert no_checkpoint.code == 2
    assert "has no checkpoint-N folder to resume from" in no_checkpoint.err
    assert (run_dir / "run_info.json").read_text() == before  # still says interrupted, not running


def test_resume_after_a_hard_kill_mid_write_drops_the_torn_line(interrupted, tmp_path, train, jsonl):
    """A SIGKILL during a metrics write leaves half a JSON line: --resume says so once and goes on."""
    _, _, original, _ = interrupted
    run_dir = _copy(original, tmp_path)
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 9999, "loss": 1.2')  # cut short: no closing brace, no newline
    result = train("--resume", run_dir)
    assert result.code == 0, result
    assert "Traceback" not in result.err + result.out
    assert result.out.count("dropped 1 torn line") == 1
    assert _info(run_dir)["status"] == "finished"
    assert all(r["step"] != 9999 for r in jsonl(run_dir / "metrics.jsonl"))


def test_resume_refuses_another_world_size_unless_forced(interrupted, tmp_path, train):
    _, _, original, _ = interrupted
    run_dir = _copy(original, tmp_path)
    info = _info(run_dir)
    info["world_size"] = 4  # as if it had trained on 4 processes
    (run_dir / "run_info.json").write_text(json.dumps(info))
    result = train("--resume", run_dir)
    assert result.code == 2, result
    assert "trained on 4 process(es), and this start has 1" in result.err and "--force" in result.err
    assert _info(run_dir)["status"] == "interrupted"  # nothing was touched


def test_resume_skips_a_checkpoint_cut_short_by_a_kill(interrupted, tmp_path, train):
    _, _, original, _ = interrupted
    run_dir = _copy(original, tmp_path)
    stopped_at = _info(run_dir)["global_step"]
    broken = run_dir / f"checkpoint-{stopped_at + 1}"
    shutil.copytree(run_dir / f"checkpoint-{stopped_at}", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # the process died while writing the weights
    result = train("--resume", run_dir)
    assert result.code == 0, result
    assert f"skipping checkpoint-{stopped_at + 1}: model.safetensors is truncated" in result.out
    assert f"resuming from checkpoint-{stopped_at}" in result.out
    assert _info(run_dir)["status"] == "finished"


def test_a_leftover_run_dir_hand_off_does_not_touch_the_old_run(interrupted, tmp_path, train, monkeypatch):
    _, _, original, config = interrupted
    old = _copy(original, tmp_path)
    before = (old / "run_info.json").read_text()
    monkeypatch.setenv("GRPOLAB_RUN_DIR", str(old))  # as an sbatch script leaves it in a shell
    monkeypatch.setenv("GRPOLAB_RUN_DIR_OWNER", "slurm:12345")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    result = train("--config", config, "--set", "training.max_steps=1", "--output-dir", tmp_path / "new")
    assert result.code == 0, result
    assert result.run_dir.parent == tmp_path / "new" and (old / "run_info.json").read_text() == before
    assert "ignoring GRPOLAB_RUN_DIR" in result.err
