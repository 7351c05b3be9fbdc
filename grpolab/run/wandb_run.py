"""WandB: the resolved config, derived values, config files as an artifact, tags and the run directory's
name; offline mode when not logged in."""

from __future__ import annotations

import netrc
import os
from pathlib import Path


def wandb_enabled(report_to: list[str]) -> bool:
    return (
        ("wandb" in report_to or "all" in report_to)
        and os.environ.get("WANDB_MODE", "").lower() != "disabled"
        and os.environ.get("WANDB_DISABLED", "").lower() not in ("true", "1")
    )


def logged_in() -> bool:
    """An API key in the environment or ~/.netrc: the only ways wandb can authenticate."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def start_wandb(
    run_dir: Path, logging_cfg, resolved: dict, derived: dict, config_files: list[Path], run_id: str | None = None
):
    """Start the run before the Trainer (its WandbCallback reuses it); `run_id`: the run a resume continues."""
    import wandb

    mode = os.environ.get("WANDB_MODE", "").lower() or (None if logged_in() else "offline")
    run = wandb.init(
        project=logging_cfg.project,
        entity=logging_cfg.entity,
        group=logging_cfg.group,
        tags=list(logging_cfg.tags) + [resolved["mode"]],
        name=run_dir.name,
        dir=str(run_dir),
        config={**resolved, "derived": derived},
        mode=mode,
        id=run_id,
        resume="allow" if run_id else None,
        settings=wandb.Settings(init_timeout=60, silent=True),
    )
    artifact = wandb.Artifact(name=f"config-{run_dir.name}", type="config")
    for path in [p for p in config_files if p and Path(p).is_file()]:
        artifact.add_file(str(path))
    run.log_artifact(artifact)
    if mode == "offline":
        saved = run.dir.rsplit("/files", 1)[0]
        print(f"wandb: offline (not logged in); run saved in {saved}; upload it with `wandb sync {saved}`")
    return run
