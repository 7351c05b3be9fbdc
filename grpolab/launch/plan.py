"""How many processes a cluster run starts, with which precision, and everything that must be
true before any of them starts. No torch import: callers pass what they found on the machine."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from grpolab.config.errors import Problem
from grpolab.config.rules import cross_field_problems

LOCAL_HOSTS = ("0.0.0.0", "localhost", "127.0.0.1", "::", "")


@dataclass(frozen=True)
class LaunchPlan:
    per_machine: int  # processes on each machine
    num_machines: int
    machine_rank: int
    device: str  # "cuda" or "cpu"
    backend: str  # ddp, deepspeed or fsdp
    zero_stage: int
    mixed_precision: str  # "no", "bf16" or "fp16" (accelerate's values)
    main_process_ip: str | None
    main_process_port: int
    launcher: str  # runtime.resolve's decision: "this process", "accelerate launch" or "torchrun"

    @property
    def world_size(self) -> int:
        return self.per_machine * self.num_machines


def make_plan(cfg, resolved) -> LaunchPlan:
    """The launch for `resolved`: its processes per machine, device and mixed precision."""
    c = cfg.cluster
    return LaunchPlan(
        per_machine=resolved.processes_per_machine,
        num_machines=c.num_machines,
        machine_rank=c.machine_rank,
        device=resolved.device,
        backend=c.backend,
        zero_stage=c.zero_stage,
        mixed_precision=resolved.mixed_precision,
        main_process_ip=c.main_process_ip,
        main_process_port=c.main_process_port,
        launcher=resolved.launcher,
    )


def plan_problems(
    cfg, plan: LaunchPlan, origin_of, resolved, *, gpus: int | None, self_launch: bool = True
) -> list[Problem]:
    """Every reason the plan cannot start, each with the smallest fix: a flat check list.
    `gpus` None = not known here (a SLURM job generated on a login node); `self_launch` False =
    the caller supplies the multi-node addresses (the sbatch script)."""
    c, W = cfg.cluster, plan.world_size
    problems = list(cross_field_problems(cfg, W, origin_of))

    def add(key, message, fix):
        problems.append(Problem(key, message, fix, origin_of(key)))

    if gpus is not None and isinstance(c.num_processes, int) and c.device != "cpu":
        if gpus == 0 and c.num_processes > 1:
            fix = f"set `cluster.device: cpu` to run {c.num_processes} CPU processes (gloo; for tests and debugging), "
            fix += "or `cluster.num_processes: auto`"
            add("cluster.num_processes", f"is {c.num_processes}, but no CUDA GPU is visible.", fix)
        elif gpus and c.num_processes > gpus:
            message = f"is {c.num_processes}, but only {gpus} CUDA GPU(s) are visible."
            add("cluster.num_processes", message, f"set `cluster.num_processes: {gpus}` (or `auto`)")
    if c.backend != "ddp" and plan.device == "cpu":
        message = f"is {c.backend}, and grpolab starts {c.backend} on GPUs only; this run is on CPU"
        message += " (accelerate has no FSDP on CPU)." if c.backend == "fsdp" else "."
        fix = "set `cluster.backend: ddp` for CPU runs"
        if c.backend == "deepspeed":
            fix += " (DeepSpeed does run on CPU ranks started by hand: `DS_ACCELERATOR=cpu accelerate launch "
            fix += "--config_file configs/accelerate/zero2.yaml -m grpolab train ...`)"
        add("cluster.backend", message, fix)
    if W > 1 and c.backend == "deepspeed" and gpus is not None and importlib.util.find_spec("deepspeed") is None:
        fix = "run `pip install deepspeed`, or set `cluster.backend: ddp` (or fsdp)"
        add("cluster.backend", "is deepspeed, but DeepSpeed is not installed.", fix)
    if c.machine_rank >= c.num_machines:
        ranks = f"ranks are 0 .. {c.num_machines - 1}"
        message = f"is {c.machine_rank}, but cluster.num_machines is {c.num_machines} ({ranks})."
        add("cluster.machine_rank", message, "set `cluster.machine_rank` to this machine's rank")
    if self_launch and c.num_machines > 1 and not c.main_process_ip:
        fix = (
            "set `cluster.main_process_ip` to the address of machine 0 (and run the same command on every machine "
            "with its own `cluster.machine_rank`), or generate a SLURM job with `grpolab launch slurm`"
        )
        add("cluster.main_process_ip", f"is not set, and {c.num_machines} machines must find machine_rank 0.", fix)
    if resolved.use_vllm and c.vllm_mode == "server" and c.vllm_server_host in LOCAL_HOSTS:
        if c.num_machines > 1:
            message = f"is `{c.vllm_server_host}`: machines other than the server's cannot reach a vLLM server there."
            fix = "set `cluster.vllm_server_host` to the server machine's address "
            fix += "(`grpolab launch slurm --vllm-server-node` does it)"
            add("cluster.vllm_server_host", message, fix)
        elif gpus and plan.per_machine >= gpus:
            message = f"uses all {gpus} visible GPUs for training, "
            message += "and a vLLM server on this machine needs GPUs of its own."
            fix = (
                f"set `cluster.num_processes: {gpus - 1}` and start the server on the last GPU (`CUDA_VISIBLE_DEVICES="
                f"{gpus - 1} VLLM_SERVER_DEV_MODE=1 vllm serve MODEL ...`), or `cluster.vllm_mode: colocate`"
            )
            add("cluster.num_processes", message, fix)
    if plan.device == "cuda" and c.mixed_precision != "auto":
        if c.mixed_precision == "bf16" and not resolved.bf16:
            fix = "set `training.bf16: true`, or `cluster.mixed_precision: auto`"
            add("cluster.mixed_precision", "is bf16, but training.bf16 resolves to false.", fix)
        elif c.mixed_precision != "bf16" and resolved.bf16:
            message = f"is {c.mixed_precision}, but training.bf16 resolves to true (bf16 wins in transformers)."
            add("cluster.mixed_precision", message, "set `training.bf16: false`, or `cluster.mixed_precision: auto`")
    return problems


def describe(cfg, plan: LaunchPlan) -> str:
    """Two lines for the console: processes, launcher, and the batch arithmetic."""
    from grpolab.config.derive import derive

    t, g = cfg.training, cfg.grpo
    d = derive(cfg, plan.world_size)
    machines = (
        f"{plan.per_machine} per machine x {plan.num_machines} machines" if plan.num_machines > 1 else "1 machine"
    )
    engines = {"ddp": "DDP", "deepspeed": f"DeepSpeed ZeRO-{plan.zero_stage}", "fsdp": "FSDP2"}
    engine = engines[plan.backend] if plan.device == "cuda" else "DDP (gloo)"
    return (
        f"cluster      {plan.world_size} process(es) ({machines}) on {plan.device}, {engine}, "
        f"started by {plan.launcher}\n"
        f"             effective batch size {d.effective_batch_size} = "
        f"{t.per_device_train_batch_size} x {t.gradient_accumulation_steps} x {plan.world_size}"
        f" (per_device_train_batch_size x gradient_accumulation_steps x processes); "
        f"{d.unique_prompts_per_round} prompts x {g.num_generations} generations = "
        f"{d.generation_batch_size} completions per generation round"
    )
