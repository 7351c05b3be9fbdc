"""`grpolab config scale FILE --gpus N`: the same experiment on N training processes.
A step learns from the unique prompts per round, the effective batch and the optimizer steps each
round feeds (on-policy when one). N processes multiply the per-process numbers by N, so scale searches
the per-device batch, gradient accumulation and generation batch that keep those as close as TRL's
divisibility rules allow (the round divides by per_device_train_batch_size x processes and by
num_generations), in that order, then the per-device batch (memory) closest to the original.
Reads and writes configs only (no torch)."""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.derive import Derived, derive, generation_round
from grpolab.config.yaml_io import write_atomic

from .edits import annotate_changes


@dataclass(frozen=True)
class Batch:
    per_device: int
    accumulation: int
    generation_batch: int | str  # an int, or "auto"
    steps_per_generation: int | None


def _cost(batch: Batch, world: int, target: dict, g: int, mu: int) -> tuple:
    """Lexicographic: unique prompts per round, effective batch, optimizer steps per round, memory per
    device (per_device_train_batch_size), then fewer changed keys."""
    # completions per round and steps per generation as TRL resolves them (Batch's fields: its arguments, in order)
    b, s = generation_round(*astuple(batch), world)
    eff = batch.per_device * batch.accumulation * world
    values = (b // g, eff, s * mu / batch.accumulation, batch.per_device)
    names = ("prompts", "effective", "steps_per_round", "per_device")
    distances = [round(abs(math.log(value / target[name])), 9) for value, name in zip(values, names)]
    changed = sum(getattr(batch, f.name) != target[f.name] for f in fields(Batch))  # Batch's fields are in target
    return (*distances, changed, batch.accumulation)


def best_batch(cfg, old_world: int, new_world: int) -> Batch:
    t, g = cfg.training, cfg.grpo
    G, mu = g.num_generations, g.num_iterations
    d = derive(cfg, old_world)
    target = {
        "prompts": d.unique_prompts_per_round,
        "effective": d.effective_batch_size,
        "steps_per_round": d.optimizer_steps_per_round,
        "per_device": t.per_device_train_batch_size,
        "accumulation": t.gradient_accumulation_steps,
        "generation_batch": g.generation_batch_size,
        "steps_per_generation": g.steps_per_generation,
    }
    B = d.generation_batch_size
    max_p = max(1, t.per_device_train_batch_size * max(1, -(-old_world // new_world)))
    max_ga = max(64, 4 * t.gradient_accumulation_steps * old_world)
    candidates, by_steps = [], g.steps_per_generation is not None
    for p in range(1, max_p + 1):
        for ga in range(1, max_ga + 1):
            unit = p * new_world
            if g.generation_batch_size == "auto" and not by_steps and (unit * ga) % G == 0:
                candidates.append(Batch(p, ga, "auto", None))
            # a pinned round: the multiple of lcm(P x W, G) nearest the original number of completions
            step = math.lcm(unit, G)
            for pinned in {max(step, (B // step) * step), max(step, -(-B // step) * step)}:
                candidates.append(Batch(p, ga, "auto", pinned // unit) if by_steps else Batch(p, ga, pinned, None))
    if not candidates:
        raise ConfigError.of("", f"no batch layout is valid on {new_world} processes.", None, "config scale")
    return min(candidates, key=lambda c: _cost(c, new_world, target, G, mu))


def scale_config(path, gpus: int, vllm_gpus: int = 0, from_world: int | None = None):
    """(the scaled loader, its change reasons, the before/after table rows, notes). Nothing is written."""
    source, old_world, world = _worlds(path, gpus, vllm_gpus, from_world)
    cfg = source.config
    before = derive(cfg, old_world)
    batch = best_batch(cfg, old_world, world)
    loader, edits, reasons = _as_cluster(source, path, world) if cfg.mode != "cluster" else (source, {}, {})
    t, g = cfg.training, cfg.grpo
    changes = {
        "training.per_device_train_batch_size": (t.per_device_train_batch_size, batch.per_device),
        "training.gradient_accumulation_steps": (t.gradient_accumulation_steps, batch.accumulation),
        "grpo.generation_batch_size": (g.generation_batch_size, batch.generation_batch),
        "grpo.steps_per_generation": (g.steps_per_generation, batch.steps_per_generation),
    }
    why = f"keeps the step's prompts and batch on {world} processes (was {old_world})"
    for key, (old, new) in changes.items():
        if old != new:
            edits[key], reasons[key] = new, why
    machines = cfg.cluster.num_machines
    edits["cluster.num_processes"] = world // machines
    split = f" ({world // machines} per machine x {machines})" if machines > 1 else ""
    reasons["cluster.num_processes"] = f"{world} training processes{split}"
    notes = _vllm_server(cfg, edits, reasons, world, gpus) if vllm_gpus else []
    loader.update_params(edits)  # validated for cluster.num_processes x num_machines = world
    GRPOConfigLoader.from_dict(loader.to_dict(), world_size=world)  # and explicitly for that world size
    after = derive(loader.config, world)
    # "keeps" only where it does: the nearest fit on another world size may change what a step
    # trains on, and then the reason says what, as the table below it shows.
    watched = (("effective batch", "effective_batch_size"), ("prompts per round", "unique_prompts_per_round"))
    moved = [
        f"{label} {getattr(before, name)} -> {getattr(after, name)}"
        for label, name in watched
        if getattr(before, name) != getattr(after, name)
    ]
    if moved:
        nearest = f"the nearest fit on {world} processes (was {old_world}); it changes {', '.join(moved)}"
        reasons.update({key: nearest for key, text in reasons.items() if text == why})
    return loader, reasons, _table(before, after, cfg, loader.config), notes


def _worlds(path, gpus: int, vllm_gpus: int, from_world: int | None) -> tuple[GRPOConfigLoader, int, int]:
    """(the file's loader, the processes it was tuned for, the training processes of the new run)."""
    if gpus < 1:
        raise ConfigError.of("", f"--gpus must be >= 1, got {gpus}.", "pass e.g. --gpus 4", "config scale")
    if not 0 <= vllm_gpus < gpus:
        message = f"--vllm-gpus {vllm_gpus} leaves no GPU for training out of --gpus {gpus}."
        raise ConfigError.of("", message, f"use --vllm-gpus between 0 and {gpus - 1}", "config scale")
    source = GRPOConfigLoader(config_path=path)
    cfg = source.config
    if from_world is None and cfg.mode == "cluster" and cfg.cluster.num_processes == "auto":
        message = "is auto, so the file does not say how many processes its batch sizes were chosen for."
        fix = "pass --from-world-size N (e.g. 8 for the cluster preset's 8 GPUs)"
        raise ConfigError.of("cluster.num_processes", message, fix, str(path))
    world = gpus - vllm_gpus
    machines = cfg.cluster.num_machines
    if world % machines:
        message = f"{world} training processes do not split evenly over {machines} machines."
        fix = f"pass --gpus {machines * math.ceil(world / machines) + vllm_gpus}, or change cluster.num_machines"
        raise ConfigError.of("cluster.num_machines", message, fix, "config scale")
    return source, from_world or source.target_world_size(), world


def _as_cluster(source: GRPOConfigLoader, path, world: int) -> tuple[GRPOConfigLoader, dict, dict]:
    """Local mode trains in one process; N processes need the launcher. The same file layered over
    the cluster preset, with every value pinned that would otherwise change with the preset."""
    loader = GRPOConfigLoader(mode="cluster", config_path=path)
    edits, reasons = {}, {"mode": f"{world} processes need the launcher (local mode trains in one process)"}
    src, new = _flat(source.to_dict()), _flat(loader.to_dict())
    for key, value in src.items():
        if key != "mode" and new.get(key) != value:
            edits[key], reasons[key] = value, "kept as it was in local mode (the cluster preset differs)"
    return loader, edits, reasons


def _vllm_server(cfg, edits: dict, reasons: dict, world: int, gpus: int) -> list[str]:
    """Generation on the GPUs left over, by a vLLM server: its edits, and the note that starts it."""
    vllm_gpus = gpus - world
    edits["cluster.use_vllm"], edits["cluster.vllm_mode"] = True, "server"
    reasons["cluster.use_vllm"] = f"generation on {vllm_gpus} GPU(s) of a vLLM server"
    reasons["cluster.vllm_mode"] = f"{vllm_gpus} GPU(s) run the vLLM server, {world} train"
    visible = ",".join(str(i) for i in range(world, gpus))
    model = cfg.model.name_or_path or "<model>"
    return [
        f"start the server on the other GPUs first: CUDA_VISIBLE_DEVICES={visible} trl vllm-serve --model {model} "
        f"--tensor_parallel_size {vllm_gpus} --port {cfg.cluster.vllm_server_port}"
    ]


def _flat(data, prefix=""):
    out = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and key != "env" and not dotted.endswith(("kwargs", "columns")):
            out.update(_flat(value, dotted))
        else:
            out[dotted] = value
    return out


def _table(before: Derived, after: Derived, old, new) -> list[tuple[str, str, str]]:
    rows = [("processes", before.world_size, after.world_size)]
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        rows.append((key, getattr(old.training, key), getattr(new.training, key)))
    for label, name in (
        ("effective batch size", "effective_batch_size"),
        ("completions per round", "generation_batch_size"),
        ("unique prompts per round", "unique_prompts_per_round"),
        ("steps per generation", "steps_per_generation"),
        ("optimizer steps per round", "optimizer_steps_per_round"),
    ):
        rows.append((label, getattr(before, name), getattr(after, name)))
    rows.append(("on-policy", "yes" if before.on_policy else "no", "yes" if after.on_policy else "no"))
    return [(label, *(f"{v:g}" if isinstance(v, float) else str(v) for v in (a, b))) for label, a, b in rows]


def render_table(rows) -> str:
    width = max(len(r[0]) for r in rows)
    w1 = max(len("before"), *(len(r[1]) for r in rows))
    lines = [f"{'':<{width}}  {'before':>{w1}}  after"]
    lines += [f"{label:<{width}}  {a:>{w1}}  {b}{'' if a == b else '  (changed)'}" for label, a, b in rows]
    return "\n".join(lines)


def scaled_text(loader, reasons: dict, rows, source, gpus: int, vllm_gpus: int) -> str:
    split = f" ({gpus - vllm_gpus} training, {vllm_gpus} vLLM server)" if vllm_gpus else ""
    table = "".join(f"#   {line}\n" for line in render_table(rows).splitlines())
    head = f"# grpolab config scale: {source} for {gpus} GPU(s){split}\n{table}"
    text = head + annotate_changes(loader.render(), reasons)
    return text if text.endswith("\n") else text + "\n"


def write(text: str, out, force: bool, world: int) -> Path:
    path = write_atomic(Path(out), text, overwrite=force)
    GRPOConfigLoader(config_path=path, world_size=world)  # what was written validates for that world size
    return path
