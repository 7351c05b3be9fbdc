"""The run directory: one folder per run under output_dir, never reused by another run.

<output_dir>/<config stem>_<YYYYmmdd-HHMMSS>/
    resolved_config.yaml  every value, defaults included (a valid --config file)
    overrides.yaml        what --set / flags changed on top of the files
    run_info.json         git, versions, host, world size, effective batch, sha256, times, status
    metrics.jsonl         every logged step
    summary.json          final and best metrics (and held-out accuracy before/after)
    checkpoint-N/         TRL checkpoints
    model/                the final model (AutoModelForCausalLM.from_pretrained loads it)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from grpolab.config.yaml_io import dump_yaml

PACKAGES = (
    "grpolab",
    "trl",
    "transformers",
    "torch",
    "accelerate",
    "datasets",
    "peft",
    "wandb",
    "pydantic",
    "ruamel.yaml",
)


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def create_run_dir(output_dir: str, stem: str, run_name: str | None = None) -> Path:
    """mkdir is atomic: a name that exists (another run) gets a -2, -3 ... suffix, never reused."""
    parent = Path(output_dir)
    parent.mkdir(parents=True, exist_ok=True)
    base = run_name or f"{stem}_{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 1000):
        path = parent / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run directory under {parent}")


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def write_config_files(run_dir: Path, resolved: dict, overrides: dict | None) -> str:
    """Write resolved_config.yaml and overrides.yaml (kept as it is when `overrides` is None, as on
    --resume); return the resolved config's sha256."""
    text = dump_yaml(resolved)
    (run_dir / "resolved_config.yaml").write_text(text)
    if overrides is not None:
        (run_dir / "overrides.yaml").write_text(dump_yaml(overrides) if overrides else "{}\n")
    return hashlib.sha256(text.encode()).hexdigest()


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info(config_path: Path | None) -> dict:
    """Commit and dirty flag of the repo holding the config (else the cwd, else the grpolab checkout),
    and the config's diff when dirty."""
    where = config_path.resolve().parent if config_path else Path.cwd()
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:  # config and cwd outside any repo: record the grpolab checkout's code instead
        where = Path(__file__).resolve().parents[2]
        commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {"commit": None, "dirty": None}
    dirty = bool((_git(["status", "--porcelain"], where) or "").strip())
    info = {
        "commit": commit.strip(),
        "dirty": dirty,
        "repo": (_git(["rev-parse", "--show-toplevel"], where) or "").strip() or None,
    }
    if config_path is not None:
        tracked = _git(["ls-files", "--error-unmatch", str(config_path.resolve())], where) is not None
        if not tracked:
            info["config_diff"] = "untracked: the config file is not committed"
        elif dirty:
            diff = _git(["diff", "HEAD", "--", str(config_path.resolve())], where)
            if diff:
                info["config_diff"] = diff
    return info


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def host_info() -> dict:
    info = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def summarize(records: list[dict]) -> dict:
    """Final and best values of each logged metric (best = max for rewards/accuracy, min for loss/kl)."""
    final, best = {}, {}
    for rec in records:
        for key, value in rec.items():
            if (
                key in ("step", "epoch", "time")
                or not isinstance(value, (int, float))
                or isinstance(value, bool)
                or math.isnan(value)
            ):
                continue
            final[key] = value
            lower_is_better = any(word in key for word in ("loss", "kl", "clip_ratio", "runtime"))
            if key not in best or (value < best[key] if lower_is_better else value > best[key]):
                best[key] = value
    return {"final": final, "best": best, "steps": max((r.get("step", 0) for r in records), default=0)}


def drop_metrics_after(run_dir: Path, step: int) -> None:
    """Keep only the metrics.jsonl records up to `step` (the checkpoint a run resumes from)."""
    path = run_dir / "metrics.jsonl"
    if path.exists():
        kept = [
            line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
