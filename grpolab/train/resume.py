"""`--resume RUN_DIR`: the run's own resolved config, and the checkpoint to continue from."""

from __future__ import annotations

from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.keys import diff


def resume_config(request) -> GRPOConfigLoader:
    """A resumed run uses its own resolved config; a different one given now is refused unless --force."""
    run_dir = Path(request.resume)
    resolved = run_dir / "resolved_config.yaml"
    if not resolved.is_file():
        raise ConfigError(
            Problem(
                "",
                f"`{run_dir}` is not a run directory (no resolved_config.yaml).",
                "pass a folder created by a previous run",
                "--resume",
            )
        )
    saved = GRPOConfigLoader(config_path=resolved)
    if not (request.config or request.overrides or request.model or request.mode or request.output_dir):
        return saved
    requested = GRPOConfigLoader(
        mode=request.mode,
        config_path=request.config or resolved,
        overrides=list(request.overrides),
        flags=request.flags(),
    )
    if request.force:
        return requested
    differ = diff(saved.to_dict(), requested.to_dict())
    if differ:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in differ[:5])
        raise ConfigError(
            Problem(
                "",
                f"the config given differs from the run's ({shown}).",
                "drop --config/--set to resume as it was, or add --force to resume with the new values",
                "--resume",
            )
        )
    return saved


def last_checkpoint(run_dir: Path) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(str(run_dir))
    if checkpoint is None:
        raise ConfigError(
            Problem(
                "", f"`{run_dir}` has no checkpoint-N folder to resume from.", "start a new run instead", "--resume"
            )
        )
    return checkpoint


def checkpoint_step(checkpoint: str) -> int:
    return int(Path(checkpoint).name.rpartition("-")[2])
