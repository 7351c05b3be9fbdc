"""A real 2-process cluster run on CPU: `python training/grpo_training.py --mode cluster` with
cluster.device=cpu starts torchrun, which runs 2 gloo DDP ranks of a tiny local model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TrainResult, read_jsonl

REPO = Path(__file__).resolve().parents[2]

RANK_REWARD = '''
import os


def rank_reward(completions, **kwargs):
    """Reward 0; records which rank scored how many completions (evidence that every rank trains)."""
    log = os.environ.get("GRPOLAB_TEST_RANK_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{os.environ.get('RANK', '-')} {len(completions)}\\n")
    return [0.0] * len(completions)
'''


@pytest.fixture
def cluster_config(tmp_path, tiny_gpt2, write_config):
    (tmp_path / "rank_reward.py").write_text(RANK_REWARD)
    return write_config(
        {
            "mode": "cluster",
            "output_dir": str(tmp_path / "runs"),
            "model": {"name_or_path": tiny_gpt2},
            "data": {"max_samples": 32},
            "rewards": [
                {"name": "numeric_match", "weight": 1.0},
                {"name": f"{tmp_path / 'rank_reward.py'}:rank_reward", "weight": 1.0},
            ],
            "training": {
                "max_steps": 3,
                "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 1,
                "logging_steps": 1,
                "save_steps": 1000,
                "gradient_checkpointing": False,
            },
            "grpo": {"num_generations": 2, "generation_batch_size": "auto", "beta": 0.0},
            "generation": {"max_completion_length": 4},
            "logging": {"report_to": ["wandb"]},
            "cluster": {"device": "cpu"},
        },
        "cluster_cpu.yaml",
    )


@pytest.mark.slow
def test_two_cpu_processes_train_one_run(tmp_path, cluster_config, subprocess_env, train):
    from transformers import AutoModelForCausalLM

    # One process, for comparison (in this process; no tracker).
    single = train(
        "--config",
        cluster_config,
        "--set",
        "cluster.num_processes=1",
        "--set",
        "logging.report_to=[none]",
        "--output-dir",
        tmp_path / "single",
    )
    assert single.code == 0, single
    single_info = json.loads((single.run_dir / "run_info.json").read_text())
    assert single_info["world_size"] == 1

    # Two processes: self-launched through torchrun, offline WandB.
    rank_log = tmp_path / "ranks.log"
    env = dict(subprocess_env, GRPOLAB_TEST_RANK_LOG=str(rank_log), WANDB_MODE="offline")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "training" / "grpo_training.py"),
            "--config",
            str(cluster_config),
            "--set",
            "cluster.num_processes=2",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = TrainResult(done.returncode, done.stdout, done.stderr)
    assert result.code == 0, result

    # One run directory (made by the parent, used by both ranks), and it is the one reported.
    runs = list((tmp_path / "runs").iterdir())
    assert runs == [result.run_dir], runs
    run_dir = result.run_dir
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 3
    assert info["world_size"] == 2 and info["device"] == "cpu"
    assert info["effective_batch_size"] == 2 * single_info["effective_batch_size"] == 4
    assert info["derived"]["generation_batch_size"] == 2 * single_info["derived"]["generation_batch_size"]

    # Both ranks trained and scored their own completions; the console shows the plan once (rank
    # 0's), and rank 1 printed its own into logs/rank1.log.
    assert result.out.count("device       cpu x 2 process(es)") == 1
    assert "device       cpu x 2 process(es)" in (run_dir / "logs" / "rank1.log").read_text()
    assert "device       cpu x 2 process(es)" in (run_dir / "logs" / "rank0.log").read_text()
    ranks = [line.split()[0] for line in rank_log.read_text().splitlines()]
    assert set(ranks) == {"0", "1"} and ranks.count("0") == ranks.count("1") == 3

    # Every rank resolved the config the parent checked (the hash it handed down).
    launch = (run_dir / "launch_command.sh").read_text()
    assert f"GRPOLAB_CONFIG_SHA256={info['config_sha256']}" in launch
    assert "torch.distributed.run --nproc_per_node 2 --standalone" in launch

    # Rank 0 alone wrote the files: one record per step, one WandB run.
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]
    wandb_runs = list(tmp_path.rglob("offline-run-*"))
    assert len(wandb_runs) == 1 and wandb_runs[0].parent == run_dir / "wandb"

    # The final model loads.
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    assert model.config.n_layer == 2


@pytest.mark.slow
def test_ranks_started_by_hand_share_one_run_dir_without_a_run_name(tmp_path, cluster_config, subprocess_env):
    """The documented hand launch with a static rendezvous (TORCHELASTIC_RUN_ID=none): no
    --run-name needed; rank 0 creates the run directory and the other rank learns it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(port),  # static rendezvous (no --rdzv-id): every rank sees TORCHELASTIC_RUN_ID=none
            "-m",
            "grpolab.cli.main",
            "train",
            "--config",
            str(cluster_config),
            "--set",
            "cluster.num_processes=2",
            "--set",
            "logging.report_to=[none]",
        ],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = list((tmp_path / "runs").iterdir())
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["status"] == "finished" and info["world_size"] == 2
    assert (run_dir / "model" / "config.json").is_file()


BAD_REWARD = """
def explodes(completions, **kwargs):
    raise ValueError("the grader is down")
"""


def _cluster_run(cluster_config, tmp_path, subprocess_env, *sets):
    args = [sys.executable, str(REPO / "training" / "grpo_training.py"), "--config", str(cluster_config)]
    args += ["--set", "cluster.num_processes=2", "--set", "logging.report_to=[none]"]
    for item in sets:
        args += ["--set", item]
    return subprocess.run(args, cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_what_dry_run_checks_fails_before_any_rank_starts(tmp_path, cluster_config, subprocess_env):
    done = _cluster_run(cluster_config, tmp_path, subprocess_env, "generation.max_completion_length=5000")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "no prompt fits" in done.stderr and "ChildFailedError" not in done.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_an_error_inside_the_ranks_is_reported_once_and_recorded(tmp_path, cluster_config, subprocess_env):
    (tmp_path / "bad_reward.py").write_text(BAD_REWARD)
    done = _cluster_run(
        cluster_config, tmp_path, subprocess_env, f"rewards=[{{name: {tmp_path}/bad_reward.py:explodes}}]"
    )
    assert done.returncode == 1, done.stderr[-2000:]
    tail = done.stderr[done.stderr.rindex("\nerror (rank ") :]  # said once, after the launcher's output
    assert "the grader is down" in tail and done.stderr.count("\nerror (rank ") == 1
    assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr, done.stderr[-3000:]
    (run_dir,) = list((tmp_path / "runs").iterdir())
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["status"] == "failed" and "the grader is down" in info["error"]


RANK_ONE_REWARD = """
import os


def rank_one_fails(completions, **kwargs):
    if os.environ.get("RANK") == "1":
        raise ValueError("boom on rank 1")
    return [0.0] * len(completions)
"""


@pytest.mark.slow
def test_the_first_rank_to_fail_is_the_error_reported_and_recorded(tmp_path, cluster_config, subprocess_env):
    """Rank 1 fails alone; rank 0 then sees only its peer vanish. The user is told rank 1's error,
    in the console and in run_info.json; each rank's own output is kept under logs/."""
    (tmp_path / "rank_one.py").write_text(RANK_ONE_REWARD)
    done = _cluster_run(
        cluster_config, tmp_path, subprocess_env, f"rewards=[{{name: {tmp_path}/rank_one.py:rank_one_fails}}]"
    )
    assert done.returncode == 1, done.stderr[-3000:]
    tail = done.stderr[done.stderr.rindex("\nerror (rank 1): ") :]
    assert "boom on rank 1" in tail, done.stderr[-3000:]
    # torchrun's ChildFailedError and rank 0's "Connection closed by peer" stay in the logs
    console = done.stdout + done.stderr
    assert "Traceback" not in console and "ChildFailedError" not in console, done.stderr[-3000:]
    assert "logs/rank1.log" in tail
    (run_dir,) = list((tmp_path / "runs").iterdir())
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["status"] == "failed" and "boom on rank 1" in info["error"] and info["failed_rank"] == 1
    logs = {path.name: path.read_text() for path in (run_dir / "logs").glob("rank*.log")}
    assert set(logs) == {"rank0.log", "rank1.log"} and "boom on rank 1" in logs["rank1.log"], logs.keys()
    assert done.stdout.count("effective batch") <= 1  # the plan is printed by rank 0 only
