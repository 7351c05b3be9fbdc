"""Every `auto` in a config, decided once for where the run executes.

`resolve(cfg, facts, dist)` is the only place that turns `auto` into a value: training uses
its `Resolved`, the launcher writes its files from it, and `grpolab config explain` prints the
same decisions. Each decision keeps its reason and the key that overrides it. No torch here:
the facts come from `runtime.hardware`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from grpolab.config.errors import Problem

from .dist import DistInfo
from .hardware import HardwareFacts


@dataclass(frozen=True)
class Decision:
    label: str  # what is decided, as `explain` and the training plan print it
    value: str  # the decision, for people
    reason: str  # why, in a few words
    key: str  # the config key that overrides it


@dataclass(frozen=True)
class Resolved:
    device: str  # "cuda" or "cpu"
    world_size: int  # training processes in all
    visible_gpus: int  # CUDA GPUs this process can see
    processes_per_machine: int
    launcher: str  # "this process", "accelerate launch", "torchrun", or the launcher that started us
    bf16: bool  # bf16 autocast (TRL's `bf16`)
    mixed_precision: str  # accelerate's value: "no", "bf16" or "fp16"
    model_dtype: str  # torch dtype name the policy is loaded in
    liger: bool
    use_vllm: bool
    threads: int  # torch CPU threads per process
    gradient_checkpointing: bool
    decisions: tuple[Decision, ...]
    problems: tuple[Problem, ...]  # settings this machine cannot honour (training refuses them)
    notes: tuple[str, ...] = ()  # trade-offs worth one line when training starts

    def table(self) -> list[str]:
        """One line per decision: label, value, reason and the key that overrides it (the same
        lines in `grpolab config explain` and in `grpolab train --dry-run`)."""
        width = max(len(d.label) for d in self.decisions)
        value_width = max(len(d.value) for d in self.decisions)
        return [f"{d.label:<{width}}  {d.value:<{value_width}}  {d.reason} ({d.key})" for d in self.decisions]

    def summary(self) -> str:
        """The decisions in one line, for the training plan."""
        return (
            f"{self.device} x {self.world_size} process(es), {self.threads} CPU thread(s) each; precision "
            f"{'bf16 autocast' if self.bf16 else 'fp32'}; weights {self.model_dtype}; generation "
            f"{'vLLM' if self.use_vllm else 'transformers'}; gradient checkpointing "
            f"{'on' if self.gradient_checkpointing else 'off'}; Liger {'on' if self.liger else 'off'}"
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["decisions"] = [asdict(d) for d in self.decisions]
        out["problems"] = [str(p) for p in self.problems]
        return out


def resolve(cfg, facts: HardwareFacts, dist: DistInfo | None = None, world_size: int | None = None) -> Resolved:
    """`world_size`: the processes the run will have (explain's --world-size, or the launch
    plan); default: the launcher's world, else what the config asks for on this machine."""
    dist = dist or DistInfo(launcher=None)
    c, t = cfg.cluster, cfg.training
    problems: list[Problem] = []
    notes: list[str] = []

    # Device.
    if c.device == "cuda" and not facts.gpu_count:
        problems.append(
            Problem("cluster.device", "is cuda, but no CUDA GPU is visible.", "set `cluster.device: auto` (or cpu)")
        )
    cuda = facts.gpu_count > 0 and c.device != "cpu"
    device = "cuda" if cuda else "cpu"
    device_why = (
        f"{facts.gpu_count} x {facts.gpus[0].name}"
        if cuda
        else ("set to cpu" if c.device == "cpu" else "no CUDA GPU visible")
    )

    if cfg.mode == "cluster" and not cuda and c.device == "auto":
        # A GPU preset on a machine without a GPU trains, slowly, on CPU: say so before it starts.
        notes.append(
            "cluster mode, but no CUDA GPU is visible: training runs on CPU, far slower than the preset "
            "is sized for; run it on a GPU node (check `nvidia-smi`), or set `cluster.device: cpu` to mean it"
        )

    # Processes.
    if cfg.mode == "cluster" and c.num_processes == "auto":
        per_machine = max(facts.gpu_count, 1) if cuda else 1
        per_machine_why = f"auto = {'the visible GPUs' if cuda else '1 on CPU'}"
    elif cfg.mode == "cluster":
        per_machine, per_machine_why = c.num_processes, "set"
    else:
        per_machine, per_machine_why = 1, "local mode: one process"
    if dist.launcher is not None:
        world, per_machine = dist.world_size, dist.local_world_size
        launcher = f"{dist.launcher} (rank {dist.rank} of {world})"
        launcher_why = "already started by a launcher: trains directly"
    else:
        machines = c.num_machines if cfg.mode == "cluster" else 1
        if world_size is not None and world_size != per_machine * machines:  # a planned world (explain --world-size)
            per_machine, per_machine_why = (
                max(1, world_size // machines),
                f"{world_size} processes / {machines} machine(s)",
            )
        world = per_machine * machines if world_size is None else world_size
        plugin = cfg.mode == "cluster" and c.backend != "ddp" and cuda  # DeepSpeed/FSDP live in accelerate
        if world <= 1 and not plugin:
            launcher, launcher_why = "this process", "one process needs no launcher"
        elif world <= 1:
            launcher, launcher_why = "accelerate launch", f"one process, but {c.backend} needs accelerate's plugin"
        elif cuda:
            launcher, launcher_why = "accelerate launch", f"{world} processes on GPUs"
        else:
            launcher, launcher_why = "torchrun", "CPU ranks (gloo): accelerate's CPU path needs mpirun"

    # Precision.
    native = facts.gpu_bf16 if cuda else facts.cpu_bf16
    where = "these GPUs" if cuda else "this CPU"
    if t.bf16 == "auto":
        bf16 = native
        bf16_why = (
            f"auto: {where} {'compute' if cuda else 'computes'} bf16 natively"
            if native
            else (f"auto: {where} {'have' if cuda else 'has'} no native bf16, so fp32")
        )
    else:
        bf16, bf16_why = bool(t.bf16), "set"
    if c.mixed_precision == "auto":
        mixed = "bf16" if bf16 else "no"
        mixed_why = "auto: follows training.bf16"
    else:
        mixed, mixed_why = c.mixed_precision, "set"
    # Weights: fp32 with bf16 autocast, as TRL does, so AdamW updates fp32 weights. Only where the
    # engine keeps fp32 master weights itself (DeepSpeed, FSDP) are bf16 weights free of that cost.
    masters = cfg.mode == "cluster" and c.backend in ("deepspeed", "fsdp") and cuda
    engine = {"deepspeed": "DeepSpeed", "fsdp": "FSDP"}.get(c.backend, c.backend)
    if cfg.model.dtype == "auto":
        if bf16 and masters:
            model_dtype, dtype_why = "bfloat16", f"auto: bf16 weights; {engine} keeps fp32 master weights"
        else:
            model_dtype = "float32"
            dtype_why = "auto: fp32 weights" + (" with bf16 autocast, as TRL" if bf16 else "")
    else:
        model_dtype, dtype_why = cfg.model.dtype, "set"
        if model_dtype in ("bfloat16", "float16") and not masters:
            notes.append(
                f"model.dtype: {model_dtype}: the optimizer updates {model_dtype} weights directly, without fp32 "
                "master copies, so small updates are lost; `model.dtype: auto` keeps fp32 weights (twice the "
                "weight memory) with bf16 autocast"
            )

    # Half precision needs a GPU: on CPU fp16 autocast and float16 weights fail in the first
    # forward pass (after the run directory exists); tf32 is an Ampere GPU mode.
    extra = t.model_extra or {}
    if not cuda:
        if extra.get("fp16"):
            problems.append(
                Problem(
                    "training.fp16",
                    f"is true, but training runs on CPU ({device_why}).",
                    "delete `training.fp16` (bf16: auto picks bf16 where this CPU has it)",
                )
            )
        if cfg.model.dtype == "float16":
            problems.append(
                Problem(
                    "model.dtype",
                    f"float16 weights cannot train on CPU ({device_why}).",
                    "set `model.dtype: auto` (float32 on CPU)",
                )
            )
        if extra.get("tf32"):
            problems.append(
                Problem(
                    "training.tf32",
                    f"is true, but tf32 needs an Ampere or newer GPU ({device_why}).",
                    "delete `training.tf32`",
                )
            )
        if c.mixed_precision == "fp16":
            problems.append(
                Problem(
                    "cluster.mixed_precision",
                    f"fp16 needs a GPU ({device_why}).",
                    "set `cluster.mixed_precision: auto`",
                )
            )

    # Kernels and generation engine.
    if t.use_liger_kernel is True and not (facts.has("liger_kernel") and cuda):
        missing = (
            "liger-kernel is not installed (pip install liger-kernel)"
            if not facts.has("liger_kernel")
            else "there is no CUDA GPU (Liger's kernels need one)"
        )
        problems.append(
            Problem(
                "training.use_liger_kernel",
                f"is true, but {missing}.",
                "set `training.use_liger_kernel: auto` to use it only where it can run",
            )
        )
    if t.use_liger_kernel == "auto":
        liger = cuda and facts.has("liger_kernel")
        liger_why = "auto: " + ("installed, on a GPU" if liger else "needs liger-kernel and a GPU")
    else:
        liger, liger_why = bool(t.use_liger_kernel) and cuda and facts.has("liger_kernel"), "set"
    if c.use_vllm is True and not (facts.has("vllm") and cuda):
        missing = (
            "vLLM is not installed (pip install 'trl[vllm]')" if not facts.has("vllm") else "there is no CUDA GPU"
        )
        problems.append(
            Problem(
                "cluster.use_vllm",
                f"is true, but {missing}.",
                "set `cluster.use_vllm: auto` to fall back to transformers generation",
            )
        )
    if c.use_vllm == "auto":
        use_vllm = cuda and facts.has("vllm")
        vllm_why = "auto: " + (
            "installed, on a GPU"
            if use_vllm
            else ("vLLM is not installed (pip install 'trl[vllm]')" if cuda else "vLLM needs a GPU")
        )
    else:
        use_vllm, vllm_why = bool(c.use_vllm) and cuda and facts.has("vllm"), "set"
    generation = f"vLLM {c.vllm_mode}" if use_vllm else "transformers"

    # CPU threads: this machine's cores shared by its processes (more threads than cores makes
    # every step slower; torchrun's default of 1 leaves cores idle).
    if c.threads_per_process == "auto":
        threads = max(1, facts.cores // max(1, per_machine))
        threads_why = f"auto: {facts.cores} cores / {per_machine} process(es) on this machine"
    else:
        threads, threads_why = int(c.threads_per_process), "set"

    checkpointing = bool(t.gradient_checkpointing)
    decisions = (
        Decision("device", device, device_why, "cluster.device"),
        Decision("processes per machine", str(per_machine), per_machine_why, "cluster.num_processes"),
        Decision("launcher", launcher, launcher_why, "mode, cluster.num_processes"),
        Decision("precision", "bf16 autocast" if bf16 else "fp32", bf16_why, "training.bf16"),
        Decision("accelerate mixed precision", mixed, mixed_why, "cluster.mixed_precision"),
        Decision("policy weights", model_dtype, dtype_why, "model.dtype"),
        Decision("Liger kernels", "on" if liger else "off", liger_why, "training.use_liger_kernel"),
        Decision("generation", generation, vllm_why, "cluster.use_vllm, cluster.vllm_mode"),
        Decision("CPU threads per process", str(threads), threads_why, "cluster.threads_per_process"),
        Decision(
            "gradient checkpointing",
            "on" if checkpointing else "off",
            "saves activation memory, slower steps"
            if checkpointing
            else "faster; turn on when activations do not fit",
            "training.gradient_checkpointing",
        ),
    )
    return Resolved(
        device=device,
        world_size=world,
        visible_gpus=facts.gpu_count if c.device != "cpu" else 0,
        processes_per_machine=per_machine,
        launcher=launcher,
        bf16=bf16,
        mixed_precision=mixed,
        model_dtype=model_dtype,
        liger=liger,
        use_vllm=use_vllm,
        threads=threads,
        gradient_checkpointing=checkpointing,
        decisions=decisions,
        problems=tuple(problems),
        notes=tuple(notes),
    )
