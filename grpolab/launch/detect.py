"""Which launcher started this process, and how many GPUs it can see."""

from __future__ import annotations

import os
import subprocess


def launcher(environ=os.environ) -> str | None:
    """The launcher this process runs under, or None for a plain `python` start.

    torchrun (and `accelerate launch` with several processes, which runs torchrun) sets
    RANK/LOCAL_RANK/WORLD_SIZE; `accelerate launch` with one process sets only its ACCELERATE_*
    variables; srun sets SLURM_STEP_NUM_TASKS for each task of a job step (sbatch's batch script
    does not, so a plain `python` in a batch script still self-launches)."""
    accelerate = "ACCELERATE_DYNAMO_BACKEND" in environ  # every `accelerate launch` path sets it
    if any(k in environ for k in ("TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "WORLD_SIZE")):
        return "accelerate launch" if accelerate else "torchrun"
    if accelerate:
        return "accelerate launch"
    if int(environ.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1 and "SLURM_PROCID" in environ:
        return "srun"
    return None


def srun_rank_env(environ, main_ip: str | None, port: int) -> dict[str, str]:
    """torch.distributed's env:// variables for a process that srun started as one rank.

    srun gives each task SLURM_PROCID / SLURM_LOCALID / SLURM_STEP_NUM_TASKS; torch reads
    RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT. Rank 0 runs on the step's first node."""
    main = main_ip or first_slurm_host(environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST", ""))
    if not main:
        main = environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1")
    return {
        "RANK": environ["SLURM_PROCID"],
        "WORLD_SIZE": environ["SLURM_STEP_NUM_TASKS"],
        "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
        "LOCAL_WORLD_SIZE": str(_tasks_on_first_node(environ.get("SLURM_STEP_TASKS_PER_NODE", "1"))),
        "MASTER_ADDR": main,
        "MASTER_PORT": str(port),
    }


def first_slurm_host(nodelist: str) -> str | None:
    """The first host of a SLURM node list ("gpu[01-04]" -> "gpu01"), through scontrol."""
    if not nodelist:
        return None
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    hosts = out.stdout.split()
    return hosts[0] if out.returncode == 0 and hosts else None


def visible_gpus() -> int:
    """CUDA GPUs this process can use (CUDA_VISIBLE_DEVICES applies). Imports torch: call it
    only on the training path."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _tasks_on_first_node(tasks_per_node: str) -> int:
    """SLURM_STEP_TASKS_PER_NODE looks like "4(x2),3": the first node's count (nodes usually match)."""
    head = tasks_per_node.split(",")[0].split("(")[0]
    return int(head) if head.isdigit() else 1


def usable_cores() -> int:
    """CPU cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_threads(setting, processes_here: int) -> int:
    """`cluster.threads_per_process`: a number, or auto = this machine's cores shared by its
    processes (more threads than cores makes every step slower; torchrun's default of 1 leaves
    cores idle when a few CPU ranks share a machine)."""
    if setting != "auto":
        return int(setting)
    return max(1, usable_cores() // max(1, processes_here))


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX, Arm BF16), read from
    /proc/cpuinfo so that `config explain` needs no torch. There, bf16 autocast is faster than
    fp32 (bench/speed_choices.py: 0.65x the step time on an AVX512-BF16 EPYC); without it torch
    emulates bf16 and autocast slows training down. Elsewhere (macOS, Windows): False."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as handle:
                cpuinfo = handle.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return False
