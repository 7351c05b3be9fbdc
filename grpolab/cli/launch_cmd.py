"""`grpolab launch slurm`: write (and optionally submit) an sbatch script for a multi-node run.
Reads configs only: no torch, transformers or trl import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from grpolab.cli.common import add_layer_args, output_file, positive_int
from grpolab.config import ConfigError
from grpolab.config.yaml_io import real_path, write_atomic


def register(sub) -> None:
    launch = sub.add_parser("launch", help="write cluster launch scripts (SLURM)")
    lsub = launch.add_subparsers(dest="launch_command", required=True, metavar="COMMAND")
    slurm = lsub.add_parser("slurm", help="write an sbatch script that runs one `accelerate launch` per node")
    add_layer_args(slurm)
    slurm.add_argument("--model", help="Hub id or local path (sets model.name_or_path)")
    slurm.add_argument("--nodes", type=positive_int, required=True, help="nodes to allocate")
    slurm.add_argument("--gpus-per-node", type=positive_int, required=True, help="GPUs (training processes) per node")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--time", help="time limit, e.g. 24:00:00")
    slurm.add_argument("--job-name", default="grpolab", help="SLURM job name (default: grpolab)")
    slurm.add_argument(
        "-o",
        "--output",
        type=output_file,
        default="job.sbatch",
        metavar="FILE",
        help="the sbatch script to write (default: job.sbatch); the accelerate config goes next to it",
    )
    slurm.add_argument("--force", action="store_true", help="overwrite FILE (and its accelerate config) if they exist")
    slurm.add_argument(
        "--vllm-server-node",
        action="store_true",
        help="run a vLLM server on the first node (TRL server mode); the other nodes train",
    )
    slurm.add_argument(
        "--vllm-tensor-parallel",
        type=positive_int,
        metavar="N",
        help="tensor parallel size of the vLLM server (default: the largest that divides the model's attention "
        "heads and the node's GPUs; the rest run data parallel)",
    )
    slurm.add_argument(
        "--vllm-ready-timeout",
        type=positive_int,
        default=1800,
        metavar="SECONDS",
        help="how long the trainers wait for the vLLM server to answer (default: 1800)",
    )
    slurm.add_argument(
        "--cpus-per-node", type=positive_int, help="CPUs per node (default: the whole node, --exclusive)"
    )
    slurm.add_argument("--mem", help="memory per node, e.g. 400G (default: the whole node)")
    slurm.add_argument(
        "--signal-lead",
        type=positive_int,
        default=300,
        metavar="SECONDS",
        help="SIGTERM this long before the time limit, to save a checkpoint (default: 300)",
    )
    slurm.add_argument("--submit", action="store_true", help="submit the script with sbatch after writing it")
    slurm.set_defaults(func=cmd_slurm)


def cmd_slurm(args) -> int:
    from grpolab.launch.slurm import plan_job

    request = _request(args)
    plan = plan_job(request)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path in plan.files:
        if path.exists() and not args.force:
            fix = "choose another -o, or pass --force"
            raise ConfigError.of("", "file exists; refusing to overwrite it", fix, str(path))
    for path, text in plan.files.items():
        write_atomic(path, text, overwrite=True)
    out = request.output
    out.chmod(out.stat().st_mode | 0o111)
    print("\n".join(plan.summary))
    print("\n".join(f"wrote {path}" for path in plan.files))
    if not args.submit:
        print(f"submit with: sbatch {out}")
        return 0
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        print(
            "error: --submit needs `sbatch` on PATH, and it was not found. The script is "
            f"written: run `sbatch {out}` on a SLURM login node.",
            file=sys.stderr,
        )
        return 1
    return subprocess.run([sbatch, str(out)]).returncode


def _request(args):
    """The options as launch/slurm takes them: absolute paths (the job may start elsewhere), and
    the `grpolab train` options every rank runs."""
    from dataclasses import fields

    from grpolab.launch.execute import PACKAGE_ROOT
    from grpolab.launch.slurm import SlurmRequest
    from grpolab.train.request import TrainRequest

    mode = args.mode or (None if args.config else "cluster")
    local = Path(args.model).expanduser() if args.model else None
    model = str(real_path(local)) if local and local.exists() else args.model or None
    # with the user's links kept: an error names the link given
    config = os.path.abspath(Path(args.config).expanduser()) if args.config else None
    overrides = tuple(args.overrides)
    options = {k: v for k, v in vars(args).items() if k in {f.name for f in fields(SlurmRequest)}}
    options.update(mode=mode, model=model, config=config, overrides=overrides, output=real_path(args.output))
    train_argv = TrainRequest(model=model, mode=mode, config=config, overrides=overrides).to_argv()
    return SlurmRequest(**options, python=sys.executable, package_root=str(PACKAGE_ROOT), train_argv=train_argv)
