"""`grpolab launch slurm`'s job, planned from its request (`plan_job`), and its sbatch script: one `accelerate launch`
per node (srun, one task per node), each with --num_machines, --num_processes, its --machine_rank and rank 0's address.
Optionally the first node runs a vLLM server (TRL's server mode) and the others train."""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.yaml_io import real_path
from grpolab.launch.accelerate_files import launch_files
from grpolab.launch.plan import describe, make_plan, plan_problems
from grpolab.run import run_dir as run_dirs
from grpolab.runtime.hardware import HardwareFacts
from grpolab.runtime.hub import model_config
from grpolab.runtime.resolve import resolve

# The --set that points the trainer at the vLLM node; expanded by bash when the job runs.
VLLM_HOST_OVERRIDE = "cluster.vllm_server_host=$VLLM_NODE"


@dataclass(frozen=True)
class SlurmRequest:
    """What `grpolab launch slurm` was asked for (its options, by the same names)."""

    nodes: int  # nodes in the allocation (training nodes + the vLLM node, if any)
    gpus_per_node: int
    output: Path  # the sbatch script; the accelerate config goes next to it
    python: str  # the interpreter with grpolab, trl and accelerate, same path on every node
    package_root: str  # put on PYTHONPATH so `-m grpolab` works from a checkout
    train_argv: list[str]  # the user's `grpolab train` options (absolute paths); the plan adds the job's shape
    config: str | None = None
    mode: str | None = None
    model: str | None = None
    overrides: tuple[str, ...] = ()
    job_name: str = "grpolab"
    partition: str | None = None
    time: str | None = None
    # Node resources: the whole node by default; explicit CPUs/memory for shared partitions.
    cpus_per_node: int | None = None
    mem: str | None = None
    signal_lead: int = 300  # SIGTERM this long before the time limit: time for a checkpoint
    vllm_server_node: bool = False
    vllm_tensor_parallel: int | None = None
    vllm_ready_timeout: int = 1800  # how long the trainers wait for the server before the job fails

    @property
    def train_nodes(self) -> int:
        return self.nodes - 1 if self.vllm_server_node else self.nodes

    @property
    def world_size(self) -> int:
        return self.train_nodes * self.gpus_per_node


@dataclass(frozen=True)
class SlurmJob:
    """What the sbatch script runs: the request, and what planning found."""

    request: SlurmRequest
    cfg: object  # the resolved GRPOConfig: output_dir, and the model and port a vLLM server node serves
    accelerate_config: str  # absolute path
    run_stem: str  # run directory = <output_dir>/<run_stem>_slurm-<job id>
    train_args: list[str]  # options for `grpolab train` on every rank
    summary: list[str]  # comment lines at the top (world size, batch ...)
    vllm_tensor_parallel: int = 1  # tensor x data parallel = GPUs of the vLLM node


@dataclass(frozen=True)
class SlurmPlan:
    job: SlurmJob
    files: dict[Path, str]  # the sbatch script first, then the accelerate config (and DeepSpeed JSON)
    summary: list[str]  # what the job runs, for the console and the script's head
    warnings: list[str]  # the config's


def plan_job(request: SlurmRequest) -> SlurmPlan:
    """The job and its files. Raises ConfigError with every problem found; writes nothing."""
    r, G = request, request.gpus_per_node
    if r.vllm_server_node and r.nodes < 2:
        message = "--vllm-server-node needs at least 2 nodes (one serves, the others train)."
        raise ConfigError.of("", message, "pass --nodes 2 or more", "--nodes")
    train_nodes, world = r.train_nodes, r.world_size
    # The job's shape goes into the config every rank resolves, so run_info and the checks agree.
    shape = [f"cluster.num_processes={G}", f"cluster.num_machines={train_nodes}"]
    if r.vllm_server_node:
        shape += ["cluster.use_vllm=true", "cluster.vllm_mode=server"]
    host = ["cluster.vllm_server_host=vllm-node"] if r.vllm_server_node else []  # the real one is known at run time
    checked = [*r.overrides, *shape, *host]
    flags = {"model.name_or_path": r.model} if r.model else None
    loader = GRPOConfigLoader(mode=r.mode, config_path=r.config, overrides=checked, flags=flags, world_size=world)
    cfg = loader.config
    # The job's nodes, as a login node that cannot see them plans them: GPUs with native bf16, and the engines the
    # config asks for by name installed there.
    c = cfg.cluster
    wanted = {"vllm": c.use_vllm is True, "liger_kernel": cfg.training.use_liger_kernel is True}
    engines = [name for name, on in {**wanted, "deepspeed": c.backend == "deepspeed"}.items() if on]
    resolved = resolve(cfg, HardwareFacts.planned(G, engines, cores=G), world_size=world)
    plan = make_plan(cfg, resolved)
    problems = plan_problems(cfg, plan, loader.origin_of, resolved, gpus=None, self_launch=False)
    tensor_parallel = _job_problems(r, cfg, problems)
    if problems:
        raise ConfigError(problems)

    out = r.output
    note = f" for {out.name} ({train_nodes} nodes x {G} GPUs; srun passes the machine rank and address)"
    files = launch_files(out.parent, plan, stem=f"{out.stem}.", note=note)
    if r.vllm_server_node and "vllm_server_timeout" not in cfg.grpo.model_extra:
        shape.append(f"grpo.vllm_server_timeout={r.vllm_ready_timeout}")  # TRL's own wait, as long
    train_args = [*r.train_argv, *(arg for s in shape for arg in ("--set", s))]
    train_args += ["--set", VLLM_HOST_OVERRIDE] if r.vllm_server_node else []
    summary = [line.strip() for line in describe(cfg, plan).splitlines()]
    if cfg.training.bf16 == "auto":
        summary.append(
            "precision: bf16 (assumes GPUs with native bf16, compute capability >= 8.0; "
            "on others set training.bf16: false)"
        )
    stem = (loader.config_path or loader.preset_path).stem
    job = SlurmJob(r, cfg, str(next(iter(files))), stem, train_args, summary, tensor_parallel)
    return SlurmPlan(job, {out: sbatch_script(job), **files}, summary, list(loader.warnings))


def _job_problems(request: SlurmRequest, cfg, problems: list[Problem]) -> int:
    """Adds what only a SLURM job needs (directives sbatch accepts; a model every node can read; a
    vLLM tensor parallel size that fits) to `problems`; returns that tensor parallel size."""
    problems += directive_problems(request)
    if not cfg.model.name_or_path:
        served = ", and the vLLM server needs a model to serve." if request.vllm_server_node else "."
        message = f"is not set: the job would train the embedded toy demo model{served}"
        fix = "pass --model (a Hub id or a path every node can read)"
        problems.append(Problem("model.name_or_path", message, fix, "--model"))
    if not (request.vllm_server_node and cfg.model.name_or_path):
        return 1
    heads = attention_heads(cfg.model.name_or_path, cfg.model.revision)
    try:
        return vllm_parallel(heads, request.gpus_per_node, request.vllm_tensor_parallel)[0]
    except ValueError as exc:
        problems.append(Problem("", f"{exc}.", "pass a divisor of both, or leave it out", "--vllm-tensor-parallel"))
        return 1


# What sbatch accepts (its man page): a time limit as minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (0,
# UNLIMITED or INFINITE: none); memory as a whole number with an optional K/M/G/T unit; a job name as one word (it is
# written into an `#SBATCH` line, where a space ends it).
SLURM_TIME = re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|unlimited|infinite", re.IGNORECASE)
SLURM_MEMORY = re.compile(r"\d+[KMGT]?", re.IGNORECASE)
SLURM_NAME = re.compile(r"[^\s'\"\\$`]+")


def directive_problems(request: SlurmRequest) -> list[Problem]:
    """The options that become `#SBATCH` lines, checked as sbatch would, before anything is written."""
    checks = (
        ("--time", request.time, SLURM_TIME, "a time limit such as 90, 24:00:00 or 2-00:00:00", "--time 24:00:00"),
        ("--mem", request.mem, SLURM_MEMORY, "a whole number with an optional K/M/G/T unit", "--mem 400G"),
        ("--job-name", request.job_name, SLURM_NAME, "one word without spaces or quotes", "--job-name grpolab"),
    )
    return [
        Problem("", f"{value!r} is not {what}.", f"pass e.g. {example}", flag)
        for flag, value, pattern, what, example in checks
        if value is not None and not pattern.fullmatch(value)
    ]


def vllm_parallel(attention_heads: int | None, gpus: int, requested: int | None = None) -> tuple[int, int]:
    """(tensor parallel, data parallel) for a vLLM server on `gpus` GPUs. vLLM refuses a tensor
    parallel size that does not divide the attention heads (Qwen2.5-7B: 28 heads on 8 GPUs), so
    the default is the largest size that divides both, and the rest of the GPUs run data parallel."""
    if requested is not None:
        if gpus % requested or (attention_heads and attention_heads % requested):
            raise ValueError(
                f"--vllm-tensor-parallel {requested} must divide the node's {gpus} GPUs"
                + (f" and the model's {attention_heads} attention heads" if attention_heads else "")
            )
        tp = requested
    else:
        tp = math.gcd(attention_heads, gpus) if attention_heads else 1
    return tp, gpus // tp


def attention_heads(model: str, revision: str | None = None) -> int | None:
    """`num_attention_heads` from the model's config.json (a local folder or the Hub cache, no
    download, read by runtime/hub); None when neither has it."""
    heads = model_config(model, revision).get("num_attention_heads")
    return heads if isinstance(heads, int) and heads > 0 else None


def sbatch_script(job: SlurmJob) -> str:
    r = job.request
    lines = ["#!/bin/bash", "# Written by `grpolab launch slurm`. Submit with: sbatch <this file>"]
    lines += [f"# {line}" for line in job.summary]
    lines += [f"#SBATCH {d}" for d in _directives(r)]
    lines += _prelude(job)
    lines += _vllm_server(job) if r.vllm_server_node else _ALL_NODES_TRAIN
    lines += ["", "# The options of `grpolab train`, the same on every rank."]
    lines += ["TRAIN_ARGS=("] + [f"    {line}" for line in _option_lines(job.train_args)] + [")", ""]
    lines += _train_step(r)
    if r.vllm_server_node:
        lines += ['kill "$VLLM_PID" 2>/dev/null || true', "wait || true"]
    lines += ['exit "$status"', ""]
    return "\n".join(lines)


def _directives(r: SlurmRequest) -> list[str]:
    directives = [
        f"--job-name={r.job_name}",
        f"--nodes={r.nodes}",
        "--ntasks-per-node=1",  # one `accelerate launch` per node; it starts the GPU processes
        f"--gpus-per-node={r.gpus_per_node}",
        "--output=%x-%j.out",
        "--open-mode=append",  # a requeued job adds to its log instead of replacing it
        "--requeue",  # preempted or failed nodes: run again, resuming from the last checkpoint
        f"--signal=TERM@{r.signal_lead}",
    ]
    # A shared partition: say what the ranks and vLLM need; else the default share is 1 CPU and little memory per
    # node, for 8 ranks (and vLLM): take the whole node.
    resources = [f"--{k}={v}" for k, v in (("cpus-per-task", r.cpus_per_node), ("mem", r.mem)) if v]
    directives += resources or ["--exclusive", "--mem=0"]
    return directives + [f"--{k}={v}" for k, v in (("partition", r.partition), ("time", r.time)) if v]


def _prelude(job: SlurmJob) -> list[str]:
    """A flat template: the environment every node shares, the resume check and the node list."""
    parent = shlex.quote(str(real_path(job.cfg.output_dir)))
    return [
        "",
        "set -euo pipefail",
        "",
        f"export PYTHON={shlex.quote(job.request.python)}",
        f"export PYTHONPATH={shlex.quote(job.request.package_root)}${{PYTHONPATH:+:$PYTHONPATH}}",
        f"export ACCELERATE_CONFIG={shlex.quote(job.accelerate_config)}",
        "# One run directory for every rank (rank 0 writes it); the job id makes it unique and stays",
        "# the same when the job is requeued, so a requeued job resumes there.",
        f'export GRPOLAB_RUN_DIR={parent}/"{run_dirs.slurm_run_name(job.run_stem)}"',
        'export GRPOLAB_RUN_DIR_OWNER="slurm:$SLURM_JOB_ID"  # ignored outside this job',
        'mkdir -p "$GRPOLAB_RUN_DIR/logs"',
        "# The launcher gives the ranks this long to save a checkpoint after SIGTERM before killing them.",
        f"export TORCH_ELASTIC_SHUTDOWN_TIMEOUT={max(30, job.request.signal_lead - 30)}",
        "# A port of this job's own: jobs sharing a node do not collide.",
        "export MAIN_PORT=$((20000 + SLURM_JOB_ID % 20000))",
        "# srun steps no longer inherit --cpus-per-task (Slurm >= 22.05): pass the node's CPUs on.",
        "CPUS=${SLURM_CPUS_ON_NODE:-1}",
        "",
        "RESUME=()",
        'if compgen -G "$GRPOLAB_RUN_DIR/checkpoint-*" >/dev/null; then',
        '    echo "resuming from the last checkpoint in $GRPOLAB_RUN_DIR (restart ${SLURM_RESTART_COUNT:-0})"',
        '    RESUME=(--resume "$GRPOLAB_RUN_DIR")',
        "fi",
        "",
        'mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
    ]


_ALL_NODES_TRAIN = [
    'TRAIN_NODES=("${NODES[@]}")',
    "# machine_rank 0: the first host (scontrol show hostnames ... | head -n1, without a pipe",
    "# that pipefail would fail on when head closes it early).",
    "export MAIN_NODE=${NODES[0]}",
]


def _vllm_server(job: SlurmJob) -> list[str]:
    """A flat template: the first node serves generations (TRL server mode), and the trainers wait until it answers."""
    timeout, model, port = job.request.vllm_ready_timeout, job.cfg.model, job.cfg.cluster.vllm_server_port
    tp = job.vllm_tensor_parallel
    max_len = job.cfg.grpo.model_extra.get("vllm_max_model_length")  # prompt + completion, not the full context
    server = [f"--host 0.0.0.0 --port {port}", f"--tensor-parallel-size {tp}"]
    server += [f"--data-parallel-size {job.request.gpus_per_node // tp}"]
    server += [f"--revision {shlex.quote(model.revision)}"] if model.revision else []
    server += ["--trust-remote-code"] if model.trust_remote_code else []
    server += [f"--max-model-len {max_len}"] if max_len else []
    server += ['--weight-transfer-config \'{"backend": "nccl"}\' --logprobs-mode processed_logprobs --max-logprobs -1']
    return [
        "VLLM_NODE=${NODES[0]}  # the first node serves generations; the others train",
        'TRAIN_NODES=("${NODES[@]:1}")',
        "export MAIN_NODE=${TRAIN_NODES[0]}  # machine_rank 0 (the first training node)",
        "",
        "# vLLM server (TRL server mode): the command `trl vllm-serve` runs, started directly.",
        'srun --nodes=1 --ntasks=1 --cpus-per-task="$CPUS" --nodelist="$VLLM_NODE" \\',
        '    --output="$GRPOLAB_RUN_DIR/logs/vllm.log" env VLLM_SERVER_DEV_MODE=1 \\',
        f'    "$PYTHON" -m vllm.entrypoints.cli.main serve {shlex.quote(model.name_or_path)} \\',
        *[f"    {part} \\" for part in server[:-1]],
        f"    {server[-1]} &",
        "VLLM_PID=$!",
        "",
        "# Trainers start once the server answers: loading, compiling and CUDA graphs can take",
        "# longer than TRL's own wait. A server that died stops the job at once.",
        f"deadline=$((SECONDS + {timeout}))",
        f'until "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" '
        f'"http://$VLLM_NODE:{port}/health" 2>/dev/null; do',
        '    if ! kill -0 "$VLLM_PID" 2>/dev/null; then',
        '        echo "error: the vLLM server exited before it was ready; see $GRPOLAB_RUN_DIR/logs/vllm.log" >&2',
        "        exit 1",
        "    fi",
        "    if (( SECONDS >= deadline )); then",
        f'        echo "error: the vLLM server was not ready after {timeout} s; see '
        '$GRPOLAB_RUN_DIR/logs/vllm.log" >&2',
        '        kill "$VLLM_PID" 2>/dev/null || true',
        "        exit 1",
        "    fi",
        "    sleep 10",
        "done",
    ]


def _train_step(r: SlurmRequest) -> list[str]:
    return [
        "# One task per training node; each runs accelerate launch for its GPUs. machine_rank is the",
        "# task's rank (SLURM_PROCID, one task per node), read by the inner shell on each node. Each",
        "# rank's output goes to logs/ (--tee 3: also to the job log).",
        "status=0",
        "# shellcheck disable=SC2016  # the single-quoted $ variables expand in the shell on each node",
        f'srun --nodes={r.train_nodes} --ntasks={r.train_nodes} --ntasks-per-node=1 --cpus-per-task="$CPUS" \\',
        '    --nodelist="$(IFS=,; echo "${TRAIN_NODES[*]}")" --kill-on-bad-exit=1 --wait=60 \\',
        '    bash -c \'exec "$PYTHON" -m accelerate.commands.launch \\',
        '        --config_file "$ACCELERATE_CONFIG" \\',
        f"        --num_machines {r.train_nodes} \\",
        f"        --num_processes {r.world_size} \\",
        '        --machine_rank "$SLURM_PROCID" \\',
        '        --main_process_ip "$MAIN_NODE" \\',
        '        --main_process_port "$MAIN_PORT" \\',
        '        --tee 3 --log_dir "$GRPOLAB_RUN_DIR/logs/node$SLURM_PROCID" \\',
        '        -m grpolab train "$@"\' grpolab-train "${TRAIN_ARGS[@]}" "${RESUME[@]}" || status=$?',
    ]


def _option_lines(args: list[str]) -> list[str]:
    """`--flag value` pairs one per line, quoted for bash (but for the vLLM host: the node name found when the job
    runs)."""
    lines: list[str] = []
    for arg in args:
        quoted = f'"{arg}"' if arg == VLLM_HOST_OVERRIDE else shlex.quote(arg)
        if lines and arg and not arg.startswith("--") and lines[-1].startswith("--") and " " not in lines[-1]:
            lines[-1] += " " + quoted
        else:
            lines.append(quoted)
    return lines
