"""Which launcher started this process, and its rank, world size and local ranks (from the environment)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LauncherPrecision:
    """The mixed precision a launcher imposes whatever `training.bf16` says (so `resolve` follows it)."""

    value: str  # accelerate's: "no", "bf16" or "fp16"
    source: str  # where the user set it: the accelerate config, a flag, or the DeepSpeed JSON
    deepspeed_json: str | None = None  # the JSON that decides it, when one does

    def fix(self, value: str) -> str:
        """The smallest change on the launcher's side that makes it `value`."""
        if self.deepspeed_json:
            return f'set `"enabled": "auto"` in the bf16 and fp16 blocks of {self.deepspeed_json}'
        quoted = "'no'" if value == "no" else value
        return (
            f"set `mixed_precision: {quoted}` in the accelerate config (or pass `--mixed_precision {value}` to "
            "accelerate launch)"
        )


@dataclass(frozen=True)
class DistInfo:
    launcher: str | None  # "torchrun", "accelerate launch", "srun", or None for a plain `python` start
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    precision: LauncherPrecision | None = None  # None: the launcher leaves precision to the config

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launcher(environ=os.environ) -> str | None:
    """The launcher this process runs under, or None for a plain `python` start (in an sbatch script too:
    only srun sets SLURM_STEP_NUM_TASKS)."""
    if "ACCELERATE_DYNAMO_BACKEND" in environ:  # every `accelerate launch` path sets it
        return "accelerate launch"
    if any(k in environ for k in ("TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "WORLD_SIZE")):
        return "torchrun"
    return "srun" if int(environ.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1 and "SLURM_PROCID" in environ else None


def detect(environ=os.environ, started_by: str | None = None) -> DistInfo:
    """torch's rank variables (an srun task, given them by `srun_rank_env`, passes `started_by="srun"`)."""
    rank, world = int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1"))
    local, local_world = int(environ.get("LOCAL_RANK", "0")), int(environ.get("LOCAL_WORLD_SIZE", "1"))
    return DistInfo(started_by or launcher(environ), rank, world, local, local_world, launcher_precision(environ))


def launcher_precision(environ=os.environ, launch_argv: list[str] | None = None) -> LauncherPrecision | None:
    """accelerate launch's mixed precision as transformers reads it, or a DeepSpeed JSON's explicit bf16/fp16
    blocks, which take precedence there ("auto" follows the training arguments: it imposes nothing)."""
    if ds_file := environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE"):
        try:
            ds = json.loads(Path(ds_file).read_text())
        except (OSError, ValueError):
            return None
        enabled = {k: str((ds.get(k) or {}).get("enabled", "auto")).lower() for k in ("bf16", "fp16")}
        on = [k for k, v in enabled.items() if v == "true"]
        if not on and set(enabled.values()) != {"false"}:
            return None
        value = on[0] if on else "no"
        return LauncherPrecision(value, f"{ds_file} ({value if on else 'bf16 and fp16'}.enabled)", ds_file)
    value = environ.get("ACCELERATE_MIXED_PRECISION")
    if value not in ("no", "bf16", "fp16"):
        return None
    argv = _accelerate_launch_argv() if launch_argv is None else launch_argv
    argv = [part for arg in argv for part in (arg.split("=", 1) if arg.startswith("--") else [arg])]
    for flag in ("--mixed_precision", "--mixed-precision"):
        if flag in argv:
            return LauncherPrecision(value, f"accelerate launch {flag} {value}")
    for flag in ("--config_file", "--config-file"):
        if flag in argv[:-1]:
            return LauncherPrecision(value, f"mixed_precision in {argv[argv.index(flag) + 1]}")
    default = "mixed_precision in accelerate's default config (`accelerate config`)"
    return LauncherPrecision(value, default if argv else f"ACCELERATE_MIXED_PRECISION={value}")


def _accelerate_launch_argv() -> list[str]:
    """The parent `accelerate launch`'s command line from /proc ([] elsewhere): it runs torchrun in-process."""
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []
    launch = any(a.endswith("accelerate") and b == "launch" for a, b in zip(argv, argv[1:]))
    return argv if launch or "accelerate.commands.launch" in argv else []


def srun_rank_env(environ, main_ip: str | None, port: int) -> dict[str, str]:
    """torch.distributed's env:// variables for a process srun started as one rank (rank 0: first node)."""
    nodes = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST", "")
    main = main_ip or first_slurm_host(nodes) or environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1")
    # With one GPU per task (srun --gpus-per-task=1 or --gpu-bind), the task's only GPU is
    # cuda:0 whatever its local rank; LOCAL_WORLD_SIZE keeps the real count of ranks here.
    visible = [d for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    local_rank = "0" if len(visible) == 1 else environ.get("SLURM_LOCALID", "0")
    # SLURM_STEP_TASKS_PER_NODE looks like "4(x2),3": the first node's count (nodes usually match).
    head = environ.get("SLURM_STEP_TASKS_PER_NODE", "1").split(",")[0].split("(")[0]
    ranks = {"RANK": environ["SLURM_PROCID"], "WORLD_SIZE": environ["SLURM_STEP_NUM_TASKS"], "LOCAL_RANK": local_rank}
    local_world = str(int(head)) if head.isdigit() else "1"
    return ranks | {"LOCAL_WORLD_SIZE": local_world, "MASTER_ADDR": main, "MASTER_PORT": str(port)}


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
