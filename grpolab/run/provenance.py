"""Where a run came from: the git commit (and the config's diff), package versions and the host."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from grpolab.config.yaml_io import real_path

PACKAGES = tuple("grpolab trl transformers torch accelerate datasets peft wandb pydantic ruamel.yaml".split())


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info(config_path: Path | None) -> dict:
    """Commit, dirty flag and config diff of the repo holding the config (else cwd, else grpolab's)."""
    where = real_path(config_path).parent if config_path else Path.cwd()
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:  # config and cwd outside any repo: record the grpolab checkout's code instead
        where = Path(__file__).resolve().parents[2]
        commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {"commit": None, "dirty": None}
    dirty = bool((_git(["status", "--porcelain"], where) or "").strip())
    repo = (_git(["rev-parse", "--show-toplevel"], where) or "").strip() or None
    info = {"commit": commit.strip(), "dirty": dirty, "repo": repo}
    if config_path is not None:
        config = str(real_path(config_path))
        if _git(["ls-files", "--error-unmatch", config], where) is None:
            info["config_diff"] = "untracked: the config file is not committed"
        elif dirty and (diff := _git(["diff", "HEAD", "--", config], where)):
            info["config_diff"] = diff
    return info


def package_versions() -> dict:
    versions = dict.fromkeys(PACKAGES)  # None: not installed
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def host_info() -> dict:
    info = {"hostname": socket.gethostname(), "platform": platform.platform(), "python": sys.version.split()[0]}
    info["cpu_count"] = os.cpu_count()
    with contextlib.suppress(ImportError):
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info
