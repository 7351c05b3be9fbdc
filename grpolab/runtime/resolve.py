"""Every `auto` decided once for where the run executes (training, the launcher and `config explain` use
the same `Resolved`), each decision with its reason and the key that overrides it. No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from grpolab.config.errors import Problem

from .dist import DistInfo
from .hardware import HardwareFacts


@dataclass(frozen=True)
class Decision:
    label: str  # what is decided, as `explain` and the training plan print it
    value: str  # the decision, for people
    reason: str  # why, in a few words
    key: str  # the config key that overrides it
    setting: object = field(default=None, compare=False)  # the decision as training uses it


def _on_off(label: str, on: bool, reason: str, key: str) -> Decision:
    return Decision(label, "on" if on else "off", reason, key, on)


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
    problems: tuple[Problem, ...] = ()  # settings this machine cannot honour (training refuses them)
    notes: tuple[str, ...] = ()  # trade-offs worth one line when training starts

    def table(self) -> list[str]:
        """One line per decision (`config explain` and `train --dry-run`): label, value, reason, key."""
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
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "decisions": [{k: getattr(d, k) for k in ("label", "value", "reason", "key")} for d in self.decisions],
            "problems": [str(p) for p in self.problems],
            "notes": list(self.notes),
        }


def resolve(cfg, facts: HardwareFacts, dist: DistInfo | None = None, world_size: int | None = None) -> Resolved:
    """`world_size`: explain's --world-size or the launch plan; default: the launcher's, else the config's."""
    dist = dist or DistInfo(launcher=None)
    device = _device(cfg, facts)
    cuda = device.setting == "cuda"
    per_machine, launcher, world = _processes(cfg, facts, dist, world_size, cuda)
    precision = _precision(cfg, facts, dist, cuda)
    mixed = _mixed_precision(cfg, dist, precision.setting)
    dtype = _dtype(cfg, precision.setting, cuda)
    liger = _engine("liger_kernel", cfg.training.use_liger_kernel, facts, cuda)
    vllm = _engine("vllm", cfg.cluster.use_vllm, facts, cuda)
    shown = f"vLLM {cfg.cluster.vllm_mode}" if vllm.setting else "transformers"
    generation = replace(vllm, value=shown, key="cluster.use_vllm, cluster.vllm_mode")
    threads = _threads(cfg, facts, per_machine.setting)
    on = bool(cfg.training.gradient_checkpointing)
    why = "saves activation memory, slower steps" if on else "faster; turn on when activations do not fit"
    checkpointing = _on_off("gradient checkpointing", on, why, "training.gradient_checkpointing")
    decisions = (device, per_machine, launcher, precision, mixed, dtype, liger, generation, threads, checkpointing)
    resolved = Resolved(
        device=device.setting,
        world_size=world,
        visible_gpus=facts.gpu_count if cfg.cluster.device != "cpu" else 0,
        processes_per_machine=per_machine.setting,
        launcher=launcher.value,
        bf16=precision.setting,
        mixed_precision=mixed.value,
        model_dtype=dtype.value,
        liger=liger.setting,
        use_vllm=vllm.setting,
        threads=threads.setting,
        gradient_checkpointing=on,
        decisions=decisions,
    )
    problems, notes = hardware_problems(cfg, resolved, facts, dist), _notes(cfg, resolved, facts, dist)
    return replace(resolved, problems=tuple(problems), notes=tuple(notes))


def _device(cfg, facts: HardwareFacts) -> Decision:
    if facts.gpu_count and cfg.cluster.device != "cpu":
        return Decision("device", "cuda", f"{facts.gpu_count} x {facts.gpus[0].name}", "cluster.device", "cuda")
    why = "set to cpu" if cfg.cluster.device == "cpu" else "no CUDA GPU visible"
    return Decision("device", "cpu", why, "cluster.device", "cpu")


def _processes(cfg, facts, dist: DistInfo, world_size: int | None, cuda: bool) -> tuple[Decision, Decision, int]:
    """(processes per machine, launcher, world size)."""
    c = cfg.cluster
    if cfg.mode == "cluster" and c.num_processes == "auto":
        per_machine = max(facts.gpu_count, 1) if cuda else 1
        why = f"auto = {'the visible GPUs' if cuda else '1 on CPU'}"
    elif cfg.mode == "cluster":
        per_machine, why = c.num_processes, "set"
    else:
        per_machine, why = 1, "local mode: one process"
    if dist.launcher is not None:
        world, per_machine = dist.world_size, dist.local_world_size
        launcher = f"{dist.launcher} (rank {dist.rank} of {world})"
        launcher_why = "already started by a launcher: trains directly"
    else:
        machines = c.num_machines if cfg.mode == "cluster" else 1
        if world_size is not None and world_size != per_machine * machines:  # a planned world (explain --world-size)
            per_machine, why = max(1, world_size // machines), f"{world_size} processes / {machines} machine(s)"
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
    return (
        Decision("processes per machine", str(per_machine), why, "cluster.num_processes", per_machine),
        Decision("launcher", launcher, launcher_why, "mode, cluster.num_processes"),
        world,
    )


def _precision(cfg, facts: HardwareFacts, dist: DistInfo, cuda: bool) -> Decision:
    """bf16 autocast: set, the launcher's (transformers takes it regardless), or where it is native."""
    setting, launched = cfg.training.bf16, dist.precision
    if setting != "auto":
        why, bf16 = "set", bool(setting)
    elif launched is not None and launched.value != "fp16":  # fp16: a problem unless training.fp16 (below)
        bf16, why = launched.value == "bf16", f"the launcher's mixed precision ({launched.source})"
    else:
        bf16 = facts.gpu_bf16 if cuda else facts.cpu_bf16
        where, verb = ("these GPUs", ("compute", "have")) if cuda else ("this CPU", ("computes", "has"))
        why = f"auto: {where} {verb[0]} bf16 natively" if bf16 else f"auto: {where} {verb[1]} no native bf16, so fp32"
    return Decision("precision", "bf16 autocast" if bf16 else "fp32", why, "training.bf16", bf16)


def _mixed_precision(cfg, dist: DistInfo, bf16: bool) -> Decision:
    label, key = "accelerate mixed precision", "cluster.mixed_precision"
    if dist.precision is not None:
        return Decision(label, dist.precision.value, f"the launcher's ({dist.precision.source})", key)
    if cfg.cluster.mixed_precision == "auto":
        return Decision(label, "bf16" if bf16 else "no", "auto: follows training.bf16", key)
    return Decision(label, cfg.cluster.mixed_precision, "set", key)


def _dtype(cfg, bf16: bool, cuda: bool) -> Decision:
    """Weights: fp32 with bf16 autocast, as TRL does, so AdamW updates fp32 weights. Only where the
    engine keeps fp32 master weights itself (DeepSpeed, FSDP) are bf16 weights free of that cost."""
    label, key = "policy weights", "model.dtype"
    if cfg.model.dtype != "auto":
        return Decision(label, cfg.model.dtype, "set", key)
    if bf16 and _keeps_masters(cfg, cuda):
        engine = {"deepspeed": "DeepSpeed", "fsdp": "FSDP"}[cfg.cluster.backend]
        return Decision(label, "bfloat16", f"auto: bf16 weights; {engine} keeps fp32 master weights", key)
    return Decision(label, "float32", "auto: fp32 weights" + (" with bf16 autocast, as TRL" if bf16 else ""), key)


def _keeps_masters(cfg, cuda: bool) -> bool:
    return cfg.mode == "cluster" and cfg.cluster.backend in ("deepspeed", "fsdp") and cuda


@dataclass(frozen=True)
class _Engine:
    """An optional engine that runs only where it is installed and on a GPU."""

    label: str
    key: str
    missing: str  # why it cannot run here, when not installed
    no_gpu: str  # ... and when there is no GPU
    auto_missing: str  # the reason `auto` gives for off, when not installed
    auto_no_gpu: str  # ... and when there is no GPU
    fallback: str  # what `auto` does instead


ENGINES = {
    "liger_kernel": _Engine(
        "Liger kernels",
        "training.use_liger_kernel",
        "liger-kernel is not installed (pip install liger-kernel)",
        "there is no CUDA GPU (Liger's kernels need one)",
        "needs liger-kernel and a GPU",
        "needs liger-kernel and a GPU",
        "to use it only where it can run",
    ),
    "vllm": _Engine(
        "generation",
        "cluster.use_vllm",
        "vLLM is not installed (pip install 'trl[vllm]')",
        "there is no CUDA GPU",
        "vLLM is not installed (pip install 'trl[vllm]')",
        "vLLM needs a GPU",
        "to fall back to transformers generation",
    ),
}


def _engine(name: str, setting, facts: HardwareFacts, cuda: bool) -> Decision:
    engine, runs = ENGINES[name], cuda and facts.has(name)
    if setting != "auto":
        return _on_off(engine.label, bool(setting) and runs, "set", engine.key)
    why = "installed, on a GPU" if runs else (engine.auto_missing if cuda else engine.auto_no_gpu)
    return _on_off(engine.label, runs, f"auto: {why}", engine.key)


def _threads(cfg, facts: HardwareFacts, per_machine: int) -> Decision:
    """This machine's cores shared by its processes (more threads is slower; torchrun's 1 leaves cores idle)."""
    label, key = "CPU threads per process", "cluster.threads_per_process"
    if cfg.cluster.threads_per_process != "auto":
        threads, why = int(cfg.cluster.threads_per_process), "set"
    else:
        threads = max(1, facts.cores // max(1, per_machine))
        why = f"auto: {facts.cores} cores / {per_machine} process(es) on this machine"
    return Decision(label, str(threads), why, key, threads)


def hardware_problems(cfg, resolved: Resolved, facts: HardwareFacts, dist: DistInfo | None = None) -> list[Problem]:
    """Settings this machine (or its launcher) cannot honour, each with the smallest fix. On CPU, fp16
    autocast and float16 weights fail in the first forward pass (after the run directory exists)."""
    c, extra, problems = cfg.cluster, cfg.training.model_extra or {}, []
    if c.device == "cuda" and not facts.gpu_count:
        fix = "set `cluster.device: auto` (or cpu)"
        problems.append(Problem("cluster.device", "is cuda, but no CUDA GPU is visible.", fix))
    if resolved.device == "cpu":
        on_cpu = "set to cpu" if c.device == "cpu" else "no CUDA GPU visible"
        if extra.get("fp16"):
            fix = "delete `training.fp16` (bf16: auto picks bf16 where this CPU has it)"
            problems.append(Problem("training.fp16", f"is true, but training runs on CPU ({on_cpu}).", fix))
        if cfg.model.dtype == "float16":
            fix = "set `model.dtype: auto` (float32 on CPU)"
            problems.append(Problem("model.dtype", f"float16 weights cannot train on CPU ({on_cpu}).", fix))
        if extra.get("tf32"):
            message = f"is true, but tf32 needs an Ampere or newer GPU ({on_cpu})."
            problems.append(Problem("training.tf32", message, "delete `training.tf32`"))
        if c.mixed_precision == "fp16":
            fix = "set `cluster.mixed_precision: auto`"
            problems.append(Problem("cluster.mixed_precision", f"fp16 needs a GPU ({on_cpu}).", fix))
    for name, setting in (("liger_kernel", cfg.training.use_liger_kernel), ("vllm", c.use_vllm)):
        engine = ENGINES[name]
        if setting is True and not (facts.has(name) and resolved.device == "cuda"):
            missing = engine.no_gpu if facts.has(name) else engine.missing
            fix = f"set `{engine.key}: auto` {engine.fallback}"
            problems.append(Problem(engine.key, f"is true, but {missing}.", fix))
    if dist is not None and dist.precision is not None:
        problems += _launcher_precision_problems(cfg, resolved, dist.precision)
    return problems


def _launcher_precision_problems(cfg, resolved: Resolved, launched) -> list[Problem]:
    """The launcher's mixed precision against this config's: DeepSpeed stops every rank on a
    mismatch ("ds bf16.enabled=True vs hf bf16=False"), and DDP quietly trains the launcher's."""
    ours = "fp16" if (cfg.training.model_extra or {}).get("fp16") else "bf16" if resolved.bf16 else "no"
    problems, theirs = [], f"but the launcher's mixed precision is {launched.value} ({launched.source})."
    if launched.value != ours:
        if launched.value == "fp16" and resolved.device == "cpu":
            follow = " (fp16 needs a GPU)"
        elif launched.value == "fp16":
            follow = ", or set `training.fp16: true` and `training.bf16: false` to follow it"
        else:
            follow = ", or set `training.bf16: auto` to follow it"
        message = f"resolves to {'fp32' if ours == 'no' else ours}, {theirs}"
        problems.append(Problem("training.bf16", message, launched.fix(ours) + follow, launched.source))
    if (setting := cfg.cluster.mixed_precision) not in ("auto", launched.value):
        fix = "set `cluster.mixed_precision: auto` to follow the launcher"
        problems.append(Problem("cluster.mixed_precision", f"is {setting}, {theirs}", fix, launched.source))
    return problems


def _notes(cfg, resolved: Resolved, facts: HardwareFacts, dist: DistInfo) -> list[str]:
    notes = []
    if cfg.mode == "cluster" and resolved.device == "cpu" and cfg.cluster.device == "auto":
        # A GPU preset on a machine without a GPU trains, slowly, on CPU: say so before it starts.
        notes.append(
            "cluster mode, but no CUDA GPU is visible: training runs on CPU, far slower than the preset "
            "is sized for; run it on a GPU node (check `nvidia-smi`), or set `cluster.device: cpu` to mean it"
        )
    if (dtype := cfg.model.dtype) in ("bfloat16", "float16") and not _keeps_masters(cfg, resolved.device == "cuda"):
        notes.append(
            f"model.dtype: {dtype}: the optimizer updates {dtype} weights directly, without fp32 "
            "master copies, so small updates are lost; `model.dtype: auto` keeps fp32 weights (twice the "
            "weight memory) with bf16 autocast"
        )
    cuda, launched = resolved.device == "cuda", dist.precision
    native = facts.gpu_bf16 if cuda else facts.cpu_bf16
    if launched is not None and launched.value == "bf16" and cfg.training.bf16 == "auto" and not native:
        notes.append(
            f"bf16 autocast follows the launcher ({launched.source}); this {'GPU' if cuda else 'CPU'} has no "
            "native bf16, so it is emulated and slower than fp32: launch with `--mixed_precision no` for fp32"
        )
    return notes
