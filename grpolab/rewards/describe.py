"""What the rewards, tools and data sources of a config will cost and call, for `config explain`
and anything else that must answer without importing torch: a reward model's parameter count
is read from its safetensors headers (a local folder), not by loading it."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path


def safetensors_parameters(path: str) -> int | None:
    """Parameters of a local model folder from its safetensors headers (sharded or not); None when
    the folder is not local or holds no safetensors (a Hub id: its size is known once it loads)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = [f.name for f in folder.glob("*.safetensors")]
    if not files:
        return None
    total = 0
    for name in files:
        with open(folder / name, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        total += sum(math.prod(t["shape"]) for key, t in header.items() if key != "__metadata__")
    return total


def explain_lines(cfg) -> list[str]:
    """One line per reward that is more than a function (an extra model, a service, a judge), and
    per tool, environment and rollout; empty for a config of plain reward functions."""
    lines = []
    for i, r in enumerate(cfg.rewards):
        where = f"rewards[{i}] {r.label} x{r.weight:g}"
        if r.kind == "model":
            n = safetensors_parameters(r.model)
            size = f"{n / 1e6:.2f}M parameters" if n is not None else "its size is known once it loads"
            batch = f", {r.batch_size} sequences per forward" if r.batch_size else ""
            lines.append(f"{where}: an extra model is loaded ({size}{batch}, device {r.device or 'of training'})")
        elif r.kind == "http":
            h = r.http
            lines.append(
                f"{where}: POSTs each batch to {h.url} in up to {h.concurrency} requests "
                f"(timeout {h.timeout_s:g} s, {h.retries} retries)"
            )
        elif r.kind == "judge":
            j = r.judge
            lines.append(
                f"{where}: one chat request per completion to {j.model} at {j.base_url} "
                f"({j.concurrency} at once, parse {j.parse})"
            )
    if cfg.tools:
        lines.append(f"tools: {', '.join(cfg.tools)} (passed to GRPOTrainer as tools)")
    if cfg.environment is not None:
        lines.append(f"environment: {cfg.environment} (GRPOTrainer's environment_factory)")
    if cfg.rollout is not None:
        lines.append(f"rollout: {cfg.rollout} (GRPOTrainer's rollout_func)")
    return lines
