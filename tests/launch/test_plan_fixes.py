"""Cluster defects that a first GPU job would hit, checked at the runtime/hardware seam (the
GPU facts are faked there; the libraries are real)."""

from __future__ import annotations

import shlex

import pytest
import torch

from grpolab.config import GRPOConfigLoader
from grpolab.launch import execute
from grpolab.launch.decide import decide
from grpolab.runtime import dist as dists
from grpolab.runtime.dist import DistInfo
from grpolab.runtime.hardware import GPU, HardwareFacts
from grpolab.runtime.resolve import resolve
from grpolab.train.request import TrainRequest

H100 = GPU("H100", (9, 0))


def gpus(n: int, *installed: str) -> HardwareFacts:
    return HardwareFacts(gpus=(H100,) * n, cores=32, installed=frozenset(installed))


def loader(mode="cluster", *sets):
    return GRPOConfigLoader(mode=mode, overrides=list(sets), flags={"model.name_or_path": "gpt2"})


# C1 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mode, sets, world, preset_env, pinned",
    [
        ("local", [], 1, {}, True),  # python training/grpo_training.py --model X on an 8-GPU box
        ("cluster", ["cluster.num_processes=1"], 1, {}, True),
        ("cluster", [], 1, {}, False),  # auto: counts the GPUs and launches one rank per GPU
        ("local", [], 1, {"CUDA_VISIBLE_DEVICES": "3"}, False),  # the user's choice stays
        ("local", ["cluster.device=cpu"], 1, {}, False),
        ("local", [], 2, {}, False),  # a rank of a launch: the launcher assigns its GPU
    ],
)
def test_one_process_is_pinned_to_one_gpu_before_torch_sees_cuda(mode, sets, world, preset_env, pinned, monkeypatch):
    from grpolab.runtime import hardware
    from grpolab.train.setup import pin_one_gpu

    monkeypatch.setattr(hardware, "probe", lambda use_torch=True: gpus(8))  # nvidia-smi sees 8 GPUs
    env = dict(preset_env)
    dist = DistInfo("torchrun" if world > 1 else None, world_size=world)
    assert pin_one_gpu(loader(mode, *sets).config, dist, env) is pinned
    assert env.get("CUDA_VISIBLE_DEVICES") == ("0" if pinned else preset_env.get("CUDA_VISIBLE_DEVICES"))
    monkeypatch.setattr(hardware, "probe", lambda use_torch=True: HardwareFacts())  # no GPU: nothing to pin
    assert pin_one_gpu(loader(mode, *sets).config, dist, {}) is False


def test_one_process_seeing_several_gpus_it_could_not_pin_is_refused(monkeypatch):
    from grpolab.config import ConfigError
    from grpolab.runtime import hardware
    from grpolab.train.setup import resolve_runtime

    monkeypatch.setattr(hardware, "probe", lambda use_torch=True: gpus(4) if use_torch else HardwareFacts())
    with pytest.raises(ConfigError, match="4 GPUs are visible") as info:
        resolve_runtime(loader("local").config, DistInfo(None))
    assert "CUDA_VISIBLE_DEVICES=0" in str(info.value)


# C7 ----------------------------------------------------------------------------------------------
def test_srun_task_with_one_bound_gpu_uses_device_zero():
    env = {
        "SLURM_PROCID": "13",
        "SLURM_LOCALID": "5",
        "SLURM_STEP_NUM_TASKS": "16",
        "SLURM_STEP_TASKS_PER_NODE": "8(x2)",
        "CUDA_VISIBLE_DEVICES": "5",  # srun --gpus-per-task=1: the task sees only its own GPU
    }
    out = dists.srun_rank_env(env, "node-a", 29500)
    assert (out["LOCAL_RANK"], out["LOCAL_WORLD_SIZE"], out["RANK"]) == ("0", "8", "13")
    env["CUDA_VISIBLE_DEVICES"] = "0,1,2,3,4,5,6,7"  # --gres=gpu:8: every task sees the node's GPUs
    assert dists.srun_rank_env(env, "node-a", 29500)["LOCAL_RANK"] == "5"


# C8 ----------------------------------------------------------------------------------------------
def test_multi_node_self_launch_passes_the_machine_rank_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.delenv("GRPOLAB_RUN_DIR", raising=False)
    sets = ["cluster.num_machines=2", "cluster.machine_rank=1", "cluster.main_process_ip=10.0.0.1"]
    cfg_loader = GRPOConfigLoader(
        mode="cluster", overrides=sets, flags={"model.name_or_path": "gpt2", "output_dir": str(tmp_path)}
    )
    request = TrainRequest(mode="cluster", run_name="shared", print_launch_command=True, overrides=tuple(sets))
    step = decide(cfg_loader, request, resolve(cfg_loader.config, gpus(8)), DistInfo(None))
    cmd = step.launch.cmd
    assert cmd[cmd.index("--machine_rank") + 1] == "1" and cmd[cmd.index("--main_process_ip") + 1] == "10.0.0.1"
    (config_file,) = [p for p in step.launch.files if p.suffix == ".yaml"]
    assert config_file.name == "machine1.accelerate_config.yaml"  # machine 0's shared file is not touched
    assert cmd[cmd.index("--config_file") + 1] == str(config_file)


# C9 ----------------------------------------------------------------------------------------------
def test_the_launcher_waits_long_enough_for_a_checkpoint(monkeypatch):
    seen = {}

    class Proc:
        def __init__(self, cmd, env, **streams):
            seen.update(env)

        def wait(self):
            return 0

    monkeypatch.delenv("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", raising=False)
    monkeypatch.setattr(execute.subprocess, "Popen", Proc)
    assert execute.run_child(["true"], {}) == 0
    assert int(seen["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"]) >= 120


def _stop_flag_worker(rank: int, port: int, out):
    import os

    import torch.distributed as torch_dist

    from grpolab.train.callbacks import _any_rank

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch_dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        out.put((rank, _any_rank(rank == 1)))  # only rank 1 got the signal
    finally:
        torch_dist.destroy_process_group()


def test_a_signal_on_one_rank_stops_every_rank():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_stop_flag_worker, args=(rank, port, out)) for rank in (0, 1)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == {0: True, 1: True}


# S1 ----------------------------------------------------------------------------------------------
def test_dtype_auto_keeps_fp32_weights_unless_the_engine_keeps_fp32_masters():
    assert resolve(loader("local").config, gpus(1)).model_dtype == "float32"  # bf16 autocast, as TRL
    assert resolve(loader("cluster").config, gpus(8)).model_dtype == "float32"  # DDP
    zero3 = loader("cluster", "cluster.backend=deepspeed", "cluster.zero_stage=3")
    assert resolve(zero3.config, gpus(8, "deepspeed")).model_dtype == "bfloat16"
    no_bf16 = loader("cluster", "cluster.backend=deepspeed", "training.bf16=false")
    assert resolve(no_bf16.config, gpus(8)).model_dtype == "float32"  # bf16: false never gives bf16 weights
    asked = resolve(loader("local", "model.dtype=bfloat16").config, gpus(1))
    assert asked.model_dtype == "bfloat16" and any("without fp32 master copies" in n for n in asked.notes)


# S4 ----------------------------------------------------------------------------------------------
def test_deepspeed_with_one_process_still_starts_through_accelerate(tmp_path, monkeypatch):
    monkeypatch.delenv("GRPOLAB_RUN_DIR", raising=False)
    cfg_loader = GRPOConfigLoader(
        mode="cluster",
        overrides=["cluster.backend=deepspeed", "cluster.zero_stage=3"],
        flags={"model.name_or_path": "gpt2", "output_dir": str(tmp_path)},
    )
    resolved = resolve(cfg_loader.config, gpus(1, "deepspeed"))
    assert resolved.world_size == 1 and resolved.launcher == "accelerate launch"
    step = decide(cfg_loader, TrainRequest(print_launch_command=True), resolved, DistInfo(None))
    assert step.kind == "show" and "accelerate.commands.launch" in shlex.join(step.launch.cmd)
    assert any(p.name == "deepspeed_config.json" for p in step.launch.files)


def test_deepspeed_on_cpu_is_refused_even_with_one_process(monkeypatch):
    from grpolab.launch.plan import make_plan, plan_problems

    cfg_loader = loader("cluster", "cluster.backend=deepspeed", "cluster.device=cpu")
    resolved = resolve(cfg_loader.config, HardwareFacts())
    found = plan_problems(
        cfg_loader.config, make_plan(cfg_loader.config, resolved), cfg_loader.origin_of, resolved, gpus=0
    )
    assert [p.key for p in found] == ["cluster.backend"]


# S7 ----------------------------------------------------------------------------------------------
def test_nan_guard_reads_zero3_partitions():
    from grpolab.train.callbacks import _weights_finite

    model = torch.nn.Linear(2, 2)
    for param in model.parameters():  # as ZeRO-3 leaves them: empty placeholders, the data in ds_tensor
        param.ds_tensor = param.data.clone()
        param.data = torch.empty(0)
    assert _weights_finite(model)
    model.weight.ds_tensor[0, 0] = float("nan")
    assert not _weights_finite(model)
