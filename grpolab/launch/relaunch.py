"""The self-launch. `python training/grpo_training.py --mode cluster` counts its processes,
checks the config for that world size, creates the run directory once, writes the accelerate
config into it and re-executes itself through `accelerate launch` (GPU) or `torchrun` (CPU).
The processes it starts (and any started by hand with accelerate launch / torchrun / srun) see
a launcher in their environment and train directly.

Every rank resolves the config from the same arguments; the parent passes the sha256 of its
resolved config down (GRPOLAB_CONFIG_SHA256) and a rank that resolves something else stops.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from grpolab.config import ConfigError, Problem
from grpolab.config.yaml_io import dump_yaml
from grpolab.launch import detect
from grpolab.launch.accelerate_files import ACCELERATE_CONFIG, launch_files, write_files
from grpolab.launch.plan import describe, make_plan, plan_problems

RUN_DIR_ENV = "GRPOLAB_RUN_DIR"
CONFIG_SHA_ENV = "GRPOLAB_CONFIG_SHA256"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding grpolab/ (a checkout or site-packages)


def maybe_relaunch(loader, args, hw: dict) -> int | None:
    """Called by the training pipeline once the config is resolved and the hardware detected.
    Returns None to train in this process, or the exit code of what ran instead (the launched
    processes, or --print-launch-command). May update hw["world_size"] / hw["rank"]."""
    cfg = loader.config
    show_only = getattr(args, "print_launch_command", False)
    started_by = detect.launcher()
    if started_by is not None:
        _join_launch(loader, args, hw, started_by)
        if show_only:
            print(
                f"started by {started_by} (rank {hw['rank']} of {hw['world_size']}): this process "
                "trains directly; nothing to launch"
            )
            return 0
        return None

    in_process = [sys.executable, *sys.argv]
    if cfg.mode != "cluster":
        if show_only:
            print(
                f"local mode: trains in this process ({hw['device']}), no "
                f"launcher:\n{shlex.join(_without_flag(in_process))}"
            )
            return 0
        return None

    gpus = detect.visible_gpus() if cfg.cluster.device != "cpu" else 0
    plan = make_plan(cfg, device=hw["device"], gpus=gpus, bf16_supported=hw["bf16_supported"])
    problems = plan_problems(
        cfg, plan, loader.origin_of, gpus=gpus, bf16_supported=hw["bf16_supported"], use_vllm=hw["use_vllm"]
    )
    if (
        plan.world_size > 1
        and plan.num_machines > 1
        and not (os.environ.get(RUN_DIR_ENV) or args.resume or args.run_name)
    ):
        problems.append(
            Problem(
                "",
                f"the {plan.num_machines} machines must share one run directory.",
                "pass the same --run-name on every machine (output_dir on a shared filesystem), "
                "or set GRPOLAB_RUN_DIR",
                "--run-name",
            )
        )
    if problems:
        raise ConfigError(problems)
    print(describe(cfg, plan), flush=True)

    if plan.world_size == 1:
        if show_only:
            print(f"1 process: trains in this process, no launcher:\n{shlex.join(_without_flag(in_process))}")
            return 0
        return None
    if args.dry_run:
        hw["world_size"] = plan.world_size  # check and print the plan for the cluster's world size; nothing starts
        return None

    run_dir = _run_dir_path(loader, args, plan.num_machines)
    files = launch_files(run_dir, plan, note=f" for run {run_dir.name}")
    cmd = launch_command(plan, run_dir / ACCELERATE_CONFIG, train_argv(args))
    env_added = {RUN_DIR_ENV: str(run_dir), CONFIG_SHA_ENV: config_sha256(loader)}
    if show_only:
        print_launch(cmd, env_added, files, run_dir)
        return 0

    run_dir.mkdir(parents=True, exist_ok=True)  # _run_dir_path made a fresh one already, unless shared/resumed
    write_files(files)
    (run_dir / "launch_command.sh").write_text(_shell_script(cmd, env_added))
    print(f"run dir      {run_dir}\nlaunching    {shlex.join(cmd)}", flush=True)
    return run_child(cmd, env_added)


# ------------------------------------------------------------------------- inside a launcher
def _join_launch(loader, args, hw: dict, started_by: str) -> None:
    """This process is one rank of a launch: check it resolved the launcher's config, give srun
    tasks torch's rank variables, and make every rank use one run directory."""
    cfg = loader.config
    expected = os.environ.get(CONFIG_SHA_ENV)
    if expected and expected != config_sha256(loader):
        raise ConfigError(
            Problem(
                "",
                "this rank resolved a different config than the process that launched it (sha256 "
                f"{config_sha256(loader)[:12]} != {expected[:12]}); was a config file edited "
                "during the start?",
                "start the run again",
                started_by,
            )
        )
    if started_by == "srun":
        tasks = int(os.environ["SLURM_STEP_NUM_TASKS"])
        c = cfg.cluster
        if isinstance(c.num_processes, int) and c.num_processes * c.num_machines != tasks:
            raise ConfigError(
                Problem(
                    "cluster.num_processes",
                    f"x cluster.num_machines = {c.num_processes * c.num_machines}, but srun started "
                    f"{tasks} tasks (one per rank).",
                    "start one task per GPU (`srun --ntasks-per-node=GPUS`), or let `grpolab launch "
                    "slurm` write the job",
                    started_by,
                )
            )
        os.environ.update(detect.srun_rank_env(os.environ, c.main_process_ip, c.main_process_port))
        hw["world_size"], hw["rank"] = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    if hw["world_size"] > 1 and not os.environ.get(RUN_DIR_ENV) and not args.resume:
        os.environ[RUN_DIR_ENV] = str(_shared_run_dir(loader, args, started_by))
        if hw["rank"] == 0:
            Path(os.environ[RUN_DIR_ENV]).mkdir(parents=True, exist_ok=True)


def _shared_run_dir(loader, args, started_by: str) -> Path:
    """One run directory for ranks started by hand: named by --run-name or by the launch's id
    (SLURM job/step, or torchrun's rendezvous id), which every rank of the launch shares."""
    env = os.environ
    stem = _stem(loader)
    if args.run_name:
        name = args.run_name
    elif env.get("SLURM_JOB_ID"):
        name = f"{stem}_slurm-{env['SLURM_JOB_ID']}" + (f".{env['SLURM_STEP_ID']}" if env.get("SLURM_STEP_ID") else "")
    elif env.get("TORCHELASTIC_RUN_ID", "none") != "none":
        name = f"{stem}_{env['TORCHELASTIC_RUN_ID'][:13]}"
    else:
        raise ConfigError(
            Problem(
                "",
                f"{started_by} started several ranks, and they need one shared run directory.",
                "pass --run-name NAME (the same for every rank) or set GRPOLAB_RUN_DIR, or start "
                "with plain `python` to let grpolab launch",
                started_by,
            )
        )
    return Path(loader.config.output_dir) / name


# ------------------------------------------------------------------------- the launch
def launch_command(plan, accelerate_config: Path, train_args: list[str]) -> list[str]:
    """GPU: accelerate launch with the per-run config file. CPU: torchrun, because accelerate's
    MULTI_CPU path starts a single process unless mpirun is used."""
    entry = ["-m", "grpolab.cli.main", "train", *train_args]
    if plan.launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(plan.per_machine)]
        if plan.num_machines > 1:
            cmd += [
                "--nnodes",
                str(plan.num_machines),
                "--node_rank",
                str(plan.machine_rank),
                "--master_addr",
                str(plan.main_process_ip),
                "--master_port",
                str(plan.main_process_port),
            ]
        else:
            cmd += ["--standalone"]  # a free port, picked by torchrun
        return cmd + entry
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config), *entry]


def train_argv(args) -> list[str]:
    """The training options to give every rank: the user's, without --dry-run and
    --print-launch-command (the ranks check GRPOLAB_CONFIG_SHA256 against what they resolve)."""
    out: list[str] = []
    for flag, attr in (
        ("--model", "model"),
        ("--mode", "mode"),
        ("--config", "config"),
        ("--output-dir", "output_dir"),
        ("--run-name", "run_name"),
        ("--resume", "resume"),
    ):
        value = getattr(args, attr, None)
        if value:
            out += [flag, str(value)]
    for item in getattr(args, "overrides", None) or []:
        out += ["--set", item]
    if getattr(args, "force", False):
        out.append("--force")
    return out


def config_sha256(loader) -> str:
    """The same hash the run directory records for resolved_config.yaml."""
    return hashlib.sha256(dump_yaml(loader.to_dict()).encode()).hexdigest()


def _stem(loader) -> str:
    return loader.config_path.stem if loader.config_path else loader.preset_path.stem


def _run_dir_path(loader, args, num_machines: int) -> Path:
    """The run directory the launched ranks use: --resume's, GRPOLAB_RUN_DIR, a shared
    --run-name folder (multi-node), else a new one created now (it appears once, here)."""
    if args.resume:
        return Path(args.resume)
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    if num_machines > 1:
        return Path(loader.config.output_dir) / args.run_name
    if getattr(args, "print_launch_command", False):
        import datetime as dt

        return Path(loader.config.output_dir) / (
            args.run_name or f"{_stem(loader)}_{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
        )
    from grpolab.track.run_dir import create_run_dir

    return create_run_dir(loader.config.output_dir, _stem(loader), args.run_name)


def run_child(cmd: list[str], env_added: dict) -> int:
    """Run the launcher and return its exit code. Ctrl-C reaches the ranks straight from the
    terminal (same process group), so it is ignored here rather than sent twice (a second
    Ctrl-C aborts without a checkpoint); SIGTERM sent to this process is passed on."""
    env = dict(os.environ, **env_added)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(cmd, env=env)
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum)),
    }
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


# ------------------------------------------------------------------------- printing
def print_launch(cmd: list[str], env_added: dict, files: dict, run_dir: Path) -> None:
    print(f"run dir      {run_dir}{'' if run_dir.exists() else ' (created at launch)'}")
    for path, text in files.items():
        print(f"\n--- {path}\n{text.rstrip()}")
    if not files:
        print("(torchrun on CPU: no accelerate config file)")
    print("\ncommand:")
    print(" ".join(f"{k}={shlex.quote(v)}" for k, v in env_added.items()) + " " + shlex.join(cmd))


def _shell_script(cmd: list[str], env_added: dict) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env_added.items())
    return (
        "#!/bin/sh\n# The command grpolab ran to start this run.\ncd "
        f"{shlex.quote(os.getcwd())}\n{exports}exec {shlex.join(cmd)}\n"
    )


def _without_flag(argv: list[str]) -> list[str]:
    return [a for a in argv if a != "--print-launch-command"]
