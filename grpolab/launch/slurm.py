"""The sbatch script of `grpolab launch slurm`: one `accelerate launch` per node (srun, one task
per node), each with --num_machines, --num_processes, its --machine_rank and rank 0's address.
Optionally the first node runs a vLLM server (TRL's server mode) and the others train."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

# The --set that points the trainer at the vLLM node; expanded by bash when the job runs.
VLLM_HOST_OVERRIDE = "cluster.vllm_server_host=$VLLM_NODE"


@dataclass
class SlurmJob:
    nodes: int  # nodes in the allocation (training nodes + the vLLM node, if any)
    gpus_per_node: int
    python: str  # the interpreter with grpolab, trl and accelerate, same path on every node
    package_root: str  # put on PYTHONPATH so `-m grpolab.cli.main` works from a checkout
    accelerate_config: str  # absolute path
    run_dir_parent: str  # absolute output_dir
    run_stem: str  # run directory = <run_dir_parent>/<run_stem>_slurm-<job id>
    train_args: list[str]  # options for `grpolab train` on every rank
    main_process_port: int = 29500
    job_name: str = "grpolab"
    partition: str | None = None
    time: str | None = None
    vllm_model: str | None = None  # set = reserve the first node for a vLLM server serving this model
    vllm_port: int = 8000
    summary: list[str] = field(default_factory=list)  # comment lines at the top (world size, batch ...)

    @property
    def train_nodes(self) -> int:
        return self.nodes - 1 if self.vllm_model else self.nodes

    @property
    def world_size(self) -> int:
        return self.train_nodes * self.gpus_per_node


def sbatch_script(job: SlurmJob) -> str:
    directives = [
        f"--job-name={job.job_name}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",  # one `accelerate launch` per node; it starts the GPU processes
        f"--gpus-per-node={job.gpus_per_node}",
        "--output=%x-%j.out",
    ]
    if job.partition:
        directives.append(f"--partition={job.partition}")
    if job.time:
        directives.append(f"--time={job.time}")
    lines = ["#!/bin/bash", "# Written by `grpolab launch slurm`. Submit with: sbatch <this file>"]
    lines += [f"# {line}" for line in job.summary]
    lines += [f"#SBATCH {d}" for d in directives]
    lines += [
        "",
        "set -euo pipefail",
        "",
        f"export PYTHON={shlex.quote(job.python)}",
        f"export PYTHONPATH={shlex.quote(job.package_root)}${{PYTHONPATH:+:$PYTHONPATH}}",
        f"export ACCELERATE_CONFIG={shlex.quote(job.accelerate_config)}",
        "# One run directory for every rank (rank 0 writes it); the job id makes it unique.",
        f'export GRPOLAB_RUN_DIR={shlex.quote(job.run_dir_parent)}/{shlex.quote(job.run_stem)}_slurm-"$SLURM_JOB_ID"',
        'mkdir -p "$GRPOLAB_RUN_DIR"',
        "",
        'mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
    ]
    if job.vllm_model:
        lines += [
            "VLLM_NODE=${NODES[0]}  # the first node serves generations; the others train",
            'TRAIN_NODES=("${NODES[@]:1}")',
            "export MAIN_NODE=${TRAIN_NODES[0]}  # machine_rank 0 (the first training node)",
            "",
            "# vLLM server (TRL server mode): the command `trl vllm-serve` runs, started directly.",
            'srun --nodes=1 --ntasks=1 --nodelist="$VLLM_NODE" env VLLM_SERVER_DEV_MODE=1 '
            f'"$PYTHON" -m vllm.entrypoints.cli.main serve {shlex.quote(job.vllm_model)} \\',
            f"    --host 0.0.0.0 --port {job.vllm_port} --tensor-parallel-size {job.gpus_per_node} \\",
            '    --weight-transfer-config \'{"backend": "nccl"}\' --logprobs-mode '
            "processed_logprobs --max-logprobs -1 &",
            "VLLM_PID=$!",
        ]
    else:
        lines += [
            'TRAIN_NODES=("${NODES[@]}")',
            "# machine_rank 0: the first host (scontrol show hostnames ... | head -n1, without a pipe",
            "# that pipefail would fail on when head closes it early).",
            "export MAIN_NODE=${NODES[0]}",
        ]
    lines += ["", "# The options of `grpolab train`, the same on every rank."]
    lines += ["TRAIN_ARGS=("] + [f"    {line}" for line in _option_lines(job.train_args)] + [")", ""]
    lines += [
        "# One task per training node; each runs accelerate launch for its GPUs. machine_rank is the",
        "# task's rank (SLURM_PROCID, one task per node), read by the inner shell on each node.",
        "status=0",
        "# shellcheck disable=SC2016  # the single-quoted $ variables expand in the shell on each node",
        f"srun --nodes={job.train_nodes} --ntasks={job.train_nodes} --ntasks-per-node=1 "
        f'--nodelist="$(IFS=,; echo "${{TRAIN_NODES[*]}}")" --kill-on-bad-exit=1 \\',
        '    bash -c \'exec "$PYTHON" -m accelerate.commands.launch \\',
        '        --config_file "$ACCELERATE_CONFIG" \\',
        f"        --num_machines {job.train_nodes} \\",
        f"        --num_processes {job.world_size} \\",
        '        --machine_rank "$SLURM_PROCID" \\',
        '        --main_process_ip "$MAIN_NODE" \\',
        f"        --main_process_port {job.main_process_port} \\",
        '        -m grpolab.cli.main train "$@"\' grpolab-train "${TRAIN_ARGS[@]}" || status=$?',
    ]
    if job.vllm_model:
        lines += ['kill "$VLLM_PID" 2>/dev/null || true', "wait || true"]
    lines += ['exit "$status"', ""]
    return "\n".join(lines)


def _option_lines(args: list[str]) -> list[str]:
    """`--flag value` pairs one per line, quoted for bash."""
    lines: list[str] = []
    for arg in args:
        if lines and arg and not arg.startswith("--") and lines[-1].startswith("--") and " " not in lines[-1]:
            lines[-1] += " " + _quote_arg(arg)
        else:
            lines.append(_quote_arg(arg))
    return lines


def _quote_arg(arg: str) -> str:
    """Quote for bash, except the vLLM host, which is the node name found when the job runs."""
    if arg == VLLM_HOST_OVERRIDE:
        return f'"{arg}"'
    return shlex.quote(arg)
