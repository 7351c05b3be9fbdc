"""The self-launch decisions without starting processes: launcher detection, the checks that
run before anything starts (exit 2, no run directory), --print-launch-command, and what the
parent hands its ranks (run directory, config hash, accelerate config)."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.launch import execute
from grpolab.launch.decide import decide
from grpolab.launch.plan import make_plan, plan_problems
from grpolab.run.run_dir import config_sha256
from grpolab.runtime import dist as dists
from grpolab.runtime import hardware
from grpolab.runtime.dist import DistInfo
from grpolab.runtime.hardware import GPU, HardwareFacts
from grpolab.runtime.resolve import resolve
from grpolab.train.request import TrainRequest

REPO = Path(__file__).resolve().parents[2]
DIST_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "ACCELERATE_DYNAMO_BACKEND",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "GRPOLAB_RUN_DIR",
    "GRPOLAB_CONFIG_SHA256",
)
CPU = HardwareFacts(cores=2)


def gpus(n: int, *installed: str) -> HardwareFacts:
    """A machine with `n` bf16-native GPUs (and the named engines installed), as the runtime sees it."""
    return HardwareFacts(gpus=(GPU("test GPU", (9, 0)),) * n, cores=16, installed=frozenset(installed))


def launch_step(loader, args, facts: HardwareFacts, dist: DistInfo | None = None):
    """The launch decision for `args`, as `grpolab train` makes it on a machine with `facts`."""
    dist = dist or dists.detect()
    return decide(loader, TrainRequest.from_args(args), resolve(loader.config, facts, dist), dist)


@pytest.fixture(autouse=True)
def no_launcher_env(monkeypatch):
    """No launcher variables, and any the code under test sets are removed afterwards."""
    for key in DIST_VARS:
        monkeypatch.setenv(key, "x")  # recorded as absent/previous, so teardown restores it
        monkeypatch.delenv(key)


@pytest.fixture
def no_popen(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a process was started")

    monkeypatch.setattr(execute.subprocess, "Popen", refuse)


def parse(*argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    TrainRequest.add_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def cluster(tmp_path, *sets, model="gpt2"):
    args = parse(
        "--mode",
        "cluster",
        "--model",
        model,
        "--output-dir",
        tmp_path / "runs",
        *[x for s in sets for x in ("--set", s)],
    )
    loader = GRPOConfigLoader(
        mode="cluster", overrides=list(sets), flags={"model.name_or_path": model, "output_dir": str(tmp_path / "runs")}
    )
    return loader, args


# ------------------------------------------------------------------------- detection
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "TORCHELASTIC_RUN_ID": "x"}, "torchrun"),
        ({"LOCAL_RANK": "1", "ACCELERATE_DYNAMO_BACKEND": "NO"}, "accelerate launch"),
        ({"ACCELERATE_DYNAMO_BACKEND": "NO", "ACCELERATE_MIXED_PRECISION": "no"}, "accelerate launch"),  # one process
        ({"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "3"}, "srun"),
        ({"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}, None),  # `srun python ...` with one task: self-launch
        ({"SLURM_JOB_ID": "5", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, None),  # sbatch's batch script
    ],
)
def test_launcher_detection(env, expected):
    assert dists.launcher(env) == expected


def test_srun_rank_env_maps_slurm_to_torch():
    env = {
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
    }
    assert dists.srun_rank_env(env, "10.0.0.1", 29555) == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29555",
    }
    del env["SLURM_STEP_TASKS_PER_NODE"]
    assert dists.srun_rank_env(env, "10.0.0.1", 29555)["LOCAL_WORLD_SIZE"] == "1"


@pytest.mark.parametrize(
    "setting, processes, cores, expected",
    [
        ("auto", 1, 16, 16),  # one process gets the machine
        ("auto", 4, 16, 4),  # ranks share the cores
        ("auto", 8, 2, 1),  # never 0
        (3, 4, 16, 3),  # an explicit number wins
    ],
)
def test_cpu_threads_share_the_cores_among_the_processes(tmp_path, setting, processes, cores, expected):
    loader, _ = cluster(tmp_path, f"cluster.threads_per_process={setting}", "cluster.device=cpu")
    dist = DistInfo("torchrun", world_size=processes, local_world_size=processes)
    assert resolve(loader.config, HardwareFacts(cores=cores), dist).threads == expected


# ------------------------------------------------------------------------- checks before anything starts
def problems(loader, facts=None):
    facts = gpus(4) if facts is None else facts
    resolved = resolve(loader.config, facts)
    plan = make_plan(loader.config, resolved)
    return plan, plan_problems(loader.config, plan, loader.origin_of, resolved, gpus=facts.gpu_count)


def one(problem_list, key):
    found = [p for p in problem_list if p.key == key]
    assert len(found) == 1, problem_list
    return found[0]


def test_auto_counts_the_visible_gpus(tmp_path):
    loader, _ = cluster(tmp_path)
    plan, found = problems(loader, gpus(4))
    assert (plan.per_machine, plan.world_size, plan.launcher, plan.mixed_precision) == (
        4,
        4,
        "accelerate launch",
        "bf16",
    )
    assert found == []
    plan, _ = problems(loader, CPU)
    assert (plan.world_size, plan.launcher) == (1, "this process")  # no GPU: one CPU process, no launcher


def test_generation_batch_checked_for_the_counted_world_size(tmp_path):
    loader, _ = cluster(
        tmp_path, "training.per_device_train_batch_size=2", "grpo.num_generations=2", "grpo.generation_batch_size=12"
    )
    _, found = problems(loader, gpus(4))  # 12 % (2 x 4) != 0
    p = one(found, "grpo.generation_batch_size")
    assert "world size 4" in p.message and "generation_batch_size: 16" in p.fix


def test_more_processes_than_gpus(tmp_path):
    loader, _ = cluster(tmp_path, "cluster.num_processes=8")
    p = one(problems(loader, gpus(2))[1], "cluster.num_processes")
    assert "only 2 CUDA GPU(s) are visible" in p.message and p.fix == "set `cluster.num_processes: 2` (or `auto`)"
    p = one(problems(loader, CPU)[1], "cluster.num_processes")
    assert "no CUDA GPU is visible" in p.message and "`cluster.device: cpu`" in p.fix


def test_deepspeed_and_fsdp_need_gpus(tmp_path):
    for backend in ("deepspeed", "fsdp"):
        loader, _ = cluster(tmp_path, "cluster.num_processes=2", "cluster.device=cpu", f"cluster.backend={backend}")
        p = one(problems(loader, CPU)[1], "cluster.backend")
        assert "GPUs only" in p.message and "`cluster.backend: ddp`" in p.fix


def test_deepspeed_must_be_installed(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    loader, _ = cluster(tmp_path, "cluster.backend=deepspeed")
    assert "pip install deepspeed" in one(problems(loader, gpus(4))[1], "cluster.backend").fix


def test_multi_node_needs_rank_zeros_address(tmp_path):
    loader, _ = cluster(tmp_path, "cluster.num_machines=2")
    p = one(problems(loader, gpus(8))[1], "cluster.main_process_ip")
    assert "grpolab launch slurm" in p.fix
    loader, _ = cluster(
        tmp_path, "cluster.num_machines=2", "cluster.machine_rank=2", "cluster.main_process_ip=10.0.0.1"
    )
    assert "ranks are 0 .. 1" in one(problems(loader, gpus(8))[1], "cluster.machine_rank").message


def test_vllm_server_must_be_reachable_and_have_its_own_gpus(tmp_path):
    hw = gpus(8, "vllm")
    loader, _ = cluster(
        tmp_path, "cluster.vllm_mode=server", "cluster.num_machines=2", "cluster.main_process_ip=10.0.0.1"
    )
    p = one(problems(loader, hw)[1], "cluster.vllm_server_host")
    assert "cannot reach" in p.message and "--vllm-server-node" in p.fix
    loader, _ = cluster(tmp_path, "cluster.vllm_mode=server")
    p = one(problems(loader, hw)[1], "cluster.num_processes")
    assert (
        "needs GPUs of its own" in p.message
        and "`cluster.num_processes: 7`" in p.fix
        and "CUDA_VISIBLE_DEVICES=7" in p.fix
    )
    loader, _ = cluster(tmp_path, "cluster.vllm_mode=server", "cluster.num_processes=7")
    assert problems(loader, hw)[1] == []
    loader, _ = cluster(
        tmp_path,
        "cluster.vllm_mode=server",
        "cluster.num_machines=2",
        "cluster.main_process_ip=10.0.0.1",
        "cluster.vllm_server_host=gpu-node-9",
    )
    assert problems(loader, hw)[1] == []


def test_mixed_precision_must_agree_with_bf16(tmp_path):
    loader, _ = cluster(tmp_path, "cluster.mixed_precision=bf16", "training.bf16=false")
    assert "training.bf16: true" in one(problems(loader)[1], "cluster.mixed_precision").fix
    loader, _ = cluster(tmp_path, "cluster.mixed_precision=fp16")
    assert "bf16 wins" in one(problems(loader)[1], "cluster.mixed_precision").message
    loader, _ = cluster(tmp_path, "training.bf16=false")
    assert make_plan(loader.config, resolve(loader.config, gpus(4))).mixed_precision == "no"


# ------------------------------------------------------------------------- through the training entry point
def test_invalid_cluster_config_exits_2_before_anything_starts(tmp_path, subprocess_env, tiny_gpt2):
    """The real command line: no GPU here, so 4 processes on device auto cannot start."""
    runs = tmp_path / "runs"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "training" / "grpo_training.py"),
            "--mode",
            "cluster",
            "--model",
            tiny_gpt2,
            "--output-dir",
            str(runs),
            "--set",
            "cluster.num_processes=4",
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "cluster.num_processes: is 4, but no CUDA GPU is visible." in done.stderr
    assert "Fix: set `cluster.device: cpu`" in done.stderr
    assert not runs.exists()


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            [
                "cluster.num_processes=2",
                "cluster.device=cpu",
                "training.per_device_train_batch_size=2",
                "grpo.num_generations=2",
                "grpo.generation_batch_size=6",
            ],
            "6 must be divisible by per_device_train_batch_size x world size = 2 x 2 = 4 (world size 2)",
        ),
        (["cluster.use_vllm=true"], "pip install 'trl[vllm]'"),
        (
            ["cluster.num_processes=2", "cluster.device=cpu", "cluster.backend=deepspeed"],
            "cluster.backend: is deepspeed, and grpolab starts deepspeed on GPUs only",
        ),
        (
            ["cluster.num_processes=2", "cluster.device=cpu", "cluster.num_machines=2"],
            "cluster.main_process_ip: is not set",
        ),
        (
            ["cluster.num_processes=0"],
            "cluster.num_processes: Input should be greater than or equal to 1, or 'auto' (got 0)",
        ),
    ],
)
def test_invalid_cluster_configs(train, tmp_path, tiny_gpt2, no_popen, sets, message):
    result = train(
        "--mode",
        "cluster",
        "--model",
        tiny_gpt2,
        "--output-dir",
        tmp_path / "runs",
        *[x for s in sets for x in ("--set", s)],
    )
    assert result.code == 2, result
    assert message in result.err and "Fix:" in result.err
    assert not (tmp_path / "runs").exists()


def test_print_launch_command_cpu(tmp_path, subprocess_env, tiny_gpt2):
    runs = tmp_path / "runs"
    argv = [
        "--model",
        tiny_gpt2,
        "--mode",
        "cluster",
        "--output-dir",
        str(runs),
        "--set",
        "cluster.num_processes=2",
        "--set",
        "cluster.device=cpu",
        "--set",
        "grpo.beta=0.02",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "grpolab.cli.main", "train", *argv, "--print-launch-command"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "2 process(es) (1 machine) on cpu, DDP (gloo), started by torchrun" in lines[0]
    assert "effective batch size 16 = 8 x 1 x 2" in lines[1]
    assert "(torchrun on CPU: no accelerate config file)" in lines
    command = shlex.split(lines[-1])
    assignments = [c for c in command if "=" in c and c.split("=", 1)[0].isupper()]
    env_part = dict(c.split("=", 1) for c in assignments)
    assert env_part["GRPOLAB_RUN_DIR"].startswith(str(runs / "grpo_cluster_"))
    assert len(env_part["GRPOLAB_CONFIG_SHA256"]) == 64 and env_part["GRPOLAB_RUN_DIR_OWNER"].startswith("pid:")
    assert command[len(assignments) :] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "-m",
        "grpolab",
        "train",
        *TrainRequest.from_args(parse(*argv)).to_argv(),
    ]
    assert not runs.exists()  # nothing created, nothing trained


def test_print_launch_command_local_mode(train, tmp_path, tiny_gpt2, no_popen):
    result = train("--model", tiny_gpt2, "--output-dir", tmp_path / "runs", "--print-launch-command")
    assert result.code == 0, result
    assert "local mode: trains in this process" in result.out
    assert not (tmp_path / "runs").exists()


def test_print_launch_command_gpu(tmp_path, monkeypatch, capsys, no_popen):
    """On GPUs: accelerate launch with the per-run config, printed with its contents."""
    from accelerate.commands.config.config_args import load_config_from_file

    loader, args = cluster(tmp_path, "cluster.backend=deepspeed", "cluster.zero_stage=3")
    args.print_launch_command = True
    step = launch_step(loader, args, gpus(4, "deepspeed"))
    assert step.kind == "show"
    execute.print_launch(step.launch)
    out = capsys.readouterr().out
    assert "4 process(es) (1 machine) on cuda, DeepSpeed ZeRO-3, started by accelerate launch" in out
    command = shlex.split(out.splitlines()[-1])
    config_path = Path(command[command.index("--config_file") + 1])
    assert config_path.parent.parent == tmp_path / "runs" and config_path.name == "accelerate_config.yaml"
    start = command.index(sys.executable)  # after the hand-off variables
    assert all("=" in c for c in command[:start])
    assert command[start : start + 4] == [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    assert command[command.index("--config_file") + 2 :] == [
        "-m",
        "grpolab",
        "train",
        *TrainRequest.from_args(args).for_ranks().to_argv(),
    ]
    yaml_text = out.split(f"--- {config_path}\n", 1)[1].split("\n--- ", 1)[0]
    (tmp_path / "shown.yaml").write_text(yaml_text)
    shown = load_config_from_file(str(tmp_path / "shown.yaml"))
    assert shown.num_processes == 4 and shown.deepspeed_config["deepspeed_config_file"] == str(
        config_path.parent / "deepspeed_config.json"
    )
    assert f"--- {config_path.parent / 'deepspeed_config.json'}" in out
    assert not (tmp_path / "runs").exists()


def test_launch_writes_one_run_dir_and_passes_it_down(tmp_path, monkeypatch, capsys):
    """The parent creates the run directory once, writes the accelerate config into it, and
    gives each rank GRPOLAB_RUN_DIR and the config hash."""
    started = []

    class FakeProcess:
        def __init__(self, cmd, env, **streams):
            started.append((cmd, env))
            (Path(env["GRPOLAB_RUN_DIR"]) / "run_info.json").write_text('{"status": "failed"}')  # as rank 0 would
            self.stdout, self.stderr = open(os.devnull, "rb"), open(os.devnull, "rb")  # it printed nothing

        def wait(self):
            return 3

    monkeypatch.setattr(execute.subprocess, "Popen", FakeProcess)
    loader, args = cluster(tmp_path, "cluster.backend=fsdp")
    step = launch_step(loader, args, gpus(2))
    assert step.kind == "launch" and execute.execute(step.launch) == 3  # the launcher's exit code
    ((cmd, env),) = started
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1 and env["GRPOLAB_RUN_DIR"] == str(run_dirs[0])
    assert env["GRPOLAB_CONFIG_SHA256"] == config_sha256(loader.to_dict())
    assert str(execute.PACKAGE_ROOT) in env["PYTHONPATH"].split(os.pathsep)
    assert cmd[cmd.index("--config_file") + 1] == str(run_dirs[0] / "accelerate_config.yaml")
    assert "distributed_type: FSDP" in (run_dirs[0] / "accelerate_config.yaml").read_text()
    assert shlex.join(cmd) in (run_dirs[0] / "launch_command.sh").read_text()
    assert "GRPOLAB_RUN_DIR" not in os.environ  # the parent's own environment is untouched


def test_dry_run_checks_the_cluster_world_size_without_starting(tmp_path, monkeypatch, no_popen):
    loader, args = cluster(tmp_path)
    args.dry_run = True
    resolved = resolve(loader.config, gpus(8))
    step = decide(loader, TrainRequest.from_args(args), resolved, dists.detect())
    assert step.kind == "train" and resolved.world_size == 8


# ------------------------------------------------------------------------- inside a launcher
def test_rank_refuses_a_different_config(tmp_path, monkeypatch):
    loader, args = cluster(tmp_path)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("GRPOLAB_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("GRPOLAB_CONFIG_SHA256", "0" * 64)
    with pytest.raises(ConfigError, match="resolved a different config"):
        launch_step(loader, args, CPU)
    monkeypatch.setenv("GRPOLAB_CONFIG_SHA256", config_sha256(loader.to_dict()))
    assert launch_step(loader, args, CPU).kind == "train"


def test_hand_started_ranks_share_one_run_dir(tmp_path, monkeypatch):
    """torchrun started by hand: every rank names the run directory after the rendezvous id."""
    loader, args = cluster(tmp_path)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "6f1c2d3e-aaaa-bbbb")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        step = launch_step(loader, args, CPU)
        assert step.kind == "train" and step.shared_run_dir == tmp_path / "runs" / "grpo_cluster_6f1c2d3e-aaaa"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # a static rendezvous: rank 0 names it at the start
    step = launch_step(loader, args, CPU)
    assert step.kind == "train" and step.shared_run_dir is None


def test_srun_tasks_get_torch_rank_variables(tmp_path, monkeypatch):
    loader, args = cluster(
        tmp_path,
        "cluster.num_processes=4",
        "cluster.num_machines=2",
        "cluster.main_process_ip=10.9.9.9",
        "cluster.main_process_port=29600",
    )
    for key, value in {
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_ID": "77",
        "SLURM_STEP_ID": "0",
    }.items():
        monkeypatch.setenv(key, value)
    from grpolab.train.setup import join_distributed

    dist = join_distributed(loader.config)
    assert (dist.launcher, dist.world_size, dist.rank) == ("srun", 8, 5)
    assert [os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")] == [
        "5",
        "8",
        "1",
        "10.9.9.9",
        "29600",
    ]
    step = launch_step(loader, args, gpus(4), dist)
    assert step.shared_run_dir == tmp_path / "runs" / "grpo_cluster_slurm-77.0"
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")  # one task per node is not one task per rank
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key)
    with pytest.raises(ConfigError, match="srun started 2 tasks"):
        launch_step(loader, args, gpus(4), join_distributed(loader.config))


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [
        ("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n", True),  # Zen 4 / Cooper Lake
        ("flags\t\t: fpu avx2 amx_bf16 amx_tile\n", True),  # Sapphire Rapids
        ("flags\t\t: fpu sse4_2 avx2 fma\n", False),  # AVX2 only: torch emulates bf16, autocast is slower
        ("Features\t: fp asimd bf16 i8mm\n", True),  # Arm with BF16
        ("", False),
    ],
)
def test_cpu_native_bf16_is_read_from_cpuinfo(cpuinfo, expected):
    assert hardware.cpu_has_bf16(cpuinfo) is expected
