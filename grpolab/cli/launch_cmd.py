"""`grpolab launch slurm`: write (and optionally submit) an sbatch script for a multi-node run.
Reads configs only: no torch, transformers or trl import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from grpolab.cli.common import add_layer_args, positive_int, print_warnings
from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.yaml_io import write_atomic


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
    from grpolab.launch.accelerate_files import launch_files
    from grpolab.launch.execute import PACKAGE_ROOT
    from grpolab.launch.plan import describe, make_plan, plan_problems
    from grpolab.launch.slurm import VLLM_HOST_OVERRIDE, SlurmJob, attention_heads, sbatch_script, vllm_parallel
    from grpolab.runtime.resolve import resolve

    G = args.gpus_per_node
    if args.vllm_server_node and args.nodes < 2:
        raise ConfigError(
            Problem(
                "",
                "--vllm-server-node needs at least 2 nodes (one serves, the others train).",
                "pass --nodes 2 or more",
                "--nodes",
            )
        )
    train_nodes = args.nodes - 1 if args.vllm_server_node else args.nodes
    world = train_nodes * G
    # The job's shape goes into the config every rank resolves, so run_info and the checks agree.
    shape = [f"cluster.num_processes={G}", f"cluster.num_machines={train_nodes}"]
    if args.vllm_server_node:
        shape += ["cluster.use_vllm=true", "cluster.vllm_mode=server"]
    mode = args.mode or (None if args.config else "cluster")
    flags = {"model.name_or_path": _abs_if_local(args.model)} if args.model else None
    checked = [*args.overrides, *shape] + (
        ["cluster.vllm_server_host=vllm-node"] if args.vllm_server_node else []
    )  # the real host is known when the job runs
    loader = GRPOConfigLoader(mode=mode, config_path=args.config, overrides=checked, flags=flags, world_size=world)
    print_warnings(loader)
    cfg = loader.config
    resolved = resolve(cfg, _job_facts(cfg, G), world_size=world)
    plan = make_plan(cfg, resolved)
    problems = plan_problems(cfg, plan, loader.origin_of, resolved, gpus=None, self_launch=False)
    if not cfg.model.name_or_path:
        problems.append(
            Problem(
                "model.name_or_path",
                "is not set: the job would train the embedded toy demo model"
                + (", and the vLLM server needs a model to serve." if args.vllm_server_node else "."),
                "pass --model (a Hub id or a path every node can read)",
                "--model",
            )
        )
    tensor_parallel = 1
    if args.vllm_server_node and cfg.model.name_or_path:
        heads = attention_heads(cfg.model.name_or_path, cfg.model.revision)
        try:
            tensor_parallel, _ = vllm_parallel(heads, G, args.vllm_tensor_parallel)
        except ValueError as exc:
            problems.append(
                Problem("", f"{exc}.", "pass a divisor of both, or leave it out", "--vllm-tensor-parallel")
            )
    if problems:
        raise ConfigError(problems)

    out = Path(args.output).resolve()
    files = launch_files(
        out.parent,
        plan,
        stem=f"{out.stem}.",
        note=f" for {out.name} ({train_nodes} nodes x {G} GPUs; srun passes the machine rank and address)",
    )
    accelerate_config = next(iter(files))
    if args.vllm_server_node and "vllm_server_timeout" not in cfg.grpo.model_extra:
        shape.append(f"grpo.vllm_server_timeout={args.vllm_ready_timeout}")  # TRL's own wait, as long
    train_args = _train_args(args, mode, shape)
    if args.vllm_server_node:
        train_args += ["--set", VLLM_HOST_OVERRIDE]
    summary = describe(cfg, plan).splitlines()
    if cfg.training.bf16 == "auto":
        summary.append(
            "precision: bf16 (assumes GPUs with native bf16, compute capability >= 8.0; "
            "on others set training.bf16: false)"
        )
    job = SlurmJob(
        nodes=args.nodes,
        gpus_per_node=G,
        python=sys.executable,
        package_root=str(PACKAGE_ROOT),
        accelerate_config=str(accelerate_config),
        run_dir_parent=str(Path(cfg.output_dir).resolve()),
        run_stem=(loader.config_path or loader.preset_path).stem,
        train_args=train_args,
        job_name=args.job_name,
        partition=args.partition,
        time=args.time,
        vllm_model=cfg.model.name_or_path if args.vllm_server_node else None,
        vllm_port=cfg.cluster.vllm_server_port,
        vllm_tensor_parallel=tensor_parallel,
        vllm_revision=cfg.model.revision,
        vllm_trust_remote_code=cfg.model.trust_remote_code,
        vllm_max_model_len=cfg.grpo.model_extra.get("vllm_max_model_length"),
        vllm_ready_timeout_s=args.vllm_ready_timeout,
        cpus_per_node=args.cpus_per_node,
        mem=args.mem,
        signal_lead_s=args.signal_lead,
        summary=[line.strip() for line in summary],
    )
    for path in [out, *files]:
        if path.exists() and not args.force:
            raise ConfigError(
                Problem("", "file exists; refusing to overwrite it", "choose another -o, or pass --force", str(path))
            )
    for path, text in files.items():
        write_atomic(path, text, overwrite=True)
    write_atomic(out, sbatch_script(job), overwrite=True)
    out.chmod(out.stat().st_mode | 0o111)
    print("\n".join(summary))
    print(f"wrote {out}")
    for path in files:
        print(f"wrote {path}")
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


def _train_args(args, mode: str | None, shape: list[str]) -> list[str]:
    """The options of `grpolab train` on every rank: the user's, with absolute paths, plus the job's shape."""
    from grpolab.train.request import TrainRequest

    return TrainRequest(
        model=_abs_if_local(args.model) if args.model else None,
        mode=mode,
        config=str(Path(args.config).resolve()) if args.config else None,
        overrides=(*args.overrides, *shape),
    ).to_argv()


def _job_facts(cfg, gpus_per_node: int):
    """The job's nodes, as the sbatch script is written on a login node that cannot see them:
    GPUs with native bf16, and the engines the config asks for by name installed there."""
    from grpolab.runtime.hardware import GPU, NATIVE_BF16_CAPABILITY, HardwareFacts

    installed = {"vllm"} if cfg.cluster.use_vllm is True else set()
    installed |= {"liger_kernel"} if cfg.training.use_liger_kernel is True else set()
    installed |= {"deepspeed"} if cfg.cluster.backend == "deepspeed" else set()
    gpu = GPU("GPU of the SLURM job", NATIVE_BF16_CAPABILITY)
    return HardwareFacts(gpus=(gpu,) * gpus_per_node, cores=gpus_per_node, installed=frozenset(installed))


def _abs_if_local(model: str) -> str:
    """A local model folder as an absolute path (the job may start elsewhere); a Hub id as is."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model
