"""Train here, start the ranks, or only show the launch: decided once per `grpolab train`. A cluster run
re-executes itself through `accelerate launch` (GPU) or `torchrun` (CPU); the processes a launcher started
(ours, or accelerate launch / torchrun / srun by hand) see it in their environment and train directly."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from grpolab.config import ConfigError, Problem
from grpolab.launch.accelerate_files import ACCELERATE_CONFIG, launch_files
from grpolab.launch.execute import LaunchSpec, launch_command
from grpolab.launch.plan import describe, make_plan, plan_problems
from grpolab.run import run_dir as run_dirs


@dataclass(frozen=True)
class Step:
    kind: str  # "train" (in this process), "show" (print `message`, exit 0) or "launch" (run `launch`)
    message: str = ""
    launch: LaunchSpec | None = None
    shared_run_dir: Path | None = None  # ranks started by hand: the one directory they all use


def decide(loader, request, resolved, dist) -> Step:
    cfg = loader.config
    show_only = request.print_launch_command
    if dist.launcher is not None:
        shared = _join_launch(loader, request, dist)
        if show_only:
            by = f"{dist.launcher} (rank {dist.rank} of {dist.world_size})"
            return Step("show", f"started by {by}: this process trains directly; nothing to launch")
        return Step("train", shared_run_dir=shared)

    in_process = shlex.join([sys.executable, *[a for a in sys.argv if a != "--print-launch-command"]])
    if cfg.mode != "cluster":
        if show_only:
            return Step("show", f"local mode: trains in this process ({resolved.device}), no launcher:\n{in_process}")
        return Step("train")

    plan = make_plan(cfg, resolved)
    problems = plan_problems(cfg, plan, loader.origin_of, resolved, gpus=resolved.visible_gpus)
    if plan.num_machines > 1 and not (run_dirs.handed_over_run_dir() or request.resume or request.run_name):
        fix = "pass the same --run-name on every machine (output_dir on a shared filesystem), or set "
        fix += run_dirs.RUN_DIR_ENV
        message = f"the {plan.num_machines} machines must share one run directory."
        problems.append(Problem("", message, fix, "--run-name"))
    if problems:
        raise ConfigError(problems)
    print(describe(cfg, plan), flush=True)

    if plan.world_size == 1 and resolved.launcher == "this process":
        if show_only:
            return Step("show", f"1 process: trains in this process, no launcher:\n{in_process}")
        return Step("train")
    if request.dry_run:
        return Step("train")  # check and print the plan for the cluster's world size; nothing starts

    run_dir = _run_dir_for_launch(loader, request, plan.num_machines, create=not show_only)
    # Machines share the run directory: each other machine writes its own file, never machine 0's.
    stem = f"machine{plan.machine_rank}." if plan.machine_rank else ""
    files = launch_files(run_dir, plan, stem=stem, note=f" for run {run_dir.name}")
    cmd = launch_command(plan, run_dir / f"{stem}{ACCELERATE_CONFIG}", request.for_ranks().to_argv())
    env = run_dirs.handoff_env(run_dir, loader.to_dict())
    spec = LaunchSpec(cmd=cmd, env=env, files=files, run_dir=run_dir)
    return Step("show" if show_only else "launch", launch=spec)


# ------------------------------------------------------------------------- inside a launcher
def _join_launch(loader, request, dist) -> Path | None:
    """This process is one rank of a launch: check it resolved the launcher's config, check
    srun's task count, and name the run directory all ranks share."""
    c = loader.config.cluster
    expected = run_dirs.handed_over_sha()
    mine = run_dirs.config_sha256(loader.to_dict())
    if expected and expected != mine:
        message = (
            "this rank resolved a different config than the process that launched it (sha256 "
            f"{mine[:12]} != {expected[:12]}); was a config file edited during the start?"
        )
        raise ConfigError.of("", message, "start the run again", dist.launcher)
    tasks = c.num_processes * c.num_machines if isinstance(c.num_processes, int) else dist.world_size
    if dist.launcher == "srun" and tasks != dist.world_size:
        message = f"x cluster.num_machines = {tasks}, but srun started {dist.world_size} tasks (one per rank)."
        fix = "start one task per GPU (`srun --ntasks-per-node=GPUS`), or let `grpolab launch slurm` write the job"
        raise ConfigError.of("cluster.num_processes", message, fix, dist.launcher)
    if dist.world_size == 1 or run_dirs.handed_over_run_dir() or request.resume:
        return None
    # Ranks started by hand share one run directory, named by --run-name or by the launch's id (SLURM job/step,
    # or torchrun's rendezvous id). None for a static rendezvous (accelerate launch, torchrun without --rdzv-id):
    # then rank 0 creates the directory and tells the others once the group is up.
    name = request.run_name or run_dirs.shared_run_name(run_dirs.run_stem(loader.config_path, loader.preset_path))
    return Path(loader.config.output_dir) / name if name else None


def _run_dir_for_launch(loader, request, num_machines: int, create: bool) -> Path:
    """The run directory the launched ranks use: --resume's, an inherited one, a shared
    --run-name folder (multi-node), else a new one created now (it appears once, here)."""
    if request.resume:
        return Path(request.resume)
    if handed := run_dirs.handed_over_run_dir():
        return handed
    if num_machines > 1:
        return Path(loader.config.output_dir) / request.run_name
    stem = run_dirs.run_stem(loader.config_path, loader.preset_path)
    if not create:
        return Path(loader.config.output_dir) / (request.run_name or run_dirs.stamped_name(stem))
    return run_dirs.create_run_dir(loader.config.output_dir, stem, request.run_name)
