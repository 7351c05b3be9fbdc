"""Where a run came from: the git commit (and the config's diff when it is not committed), the
versions of the packages that shape training, and the host."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from grpolab.config.yaml_io import real_path

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


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info(config_path: Path | None) -> dict:
    """Commit and dirty flag of the repo holding the config (else the cwd, else the grpolab checkout),
    and the config's diff when dirty."""
    where = real_path(config_path).parent if config_path else Path.cwd()
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
        tracked = _git(["ls-files", "--error-unmatch", str(real_path(config_path))], where) is not None
        if not tracked:
            info["config_diff"] = "untracked: the config file is not committed"
        elif dirty:
            diff = _git(["diff", "HEAD", "--", str(real_path(config_path))], where)
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
