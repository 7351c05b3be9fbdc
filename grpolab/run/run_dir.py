"""The run directory: one folder per run under output_dir, never reused by another run.

<output_dir>/<config stem>_<YYYYmmdd-HHMMSS>/
    resolved_config.yaml  every value, defaults included (a valid --config file)
    overrides.yaml        what --set / flags changed on top of the files
    run_info.json         git, versions, host, world size, effective batch, sha256, times, status
    metrics.jsonl         every logged step
    summary.json          final and best metrics (and held-out accuracy before/after)
    checkpoint-N/         TRL checkpoints
    model/                the final model (AutoModelForCausalLM.from_pretrained loads it)

This module is the only one that picks a run directory's name. Whoever starts training in
another process (the launcher for its ranks, a sweep for its trials) creates the directory here
and hands it over with `handoff_env`; the started process finds it with `handed_over_run_dir`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from grpolab.config.yaml_io import dump_yaml

RUN_DIR_ENV = "GRPOLAB_RUN_DIR"  # the run directory a started process must use
CONFIG_SHA_ENV = "GRPOLAB_CONFIG_SHA256"  # the resolved config it must arrive at
STAMP_FORMAT = "%Y%m%d-%H%M%S"
RESOLVED_CONFIG = "resolved_config.yaml"
OVERRIDES = "overrides.yaml"


def run_stem(config_path: Path | str | None, preset_path: Path | str | None = None) -> str:
    """A run is named after its config file, or after the preset when it has none."""
    source = config_path or preset_path
    if source is None:
        raise ValueError("a run needs a config file or a preset to be named after")
    return Path(source).stem


def stamped_name(stem: str, when: dt.datetime | None = None) -> str:
    """`<stem>_<YYYYmmdd-HHMMSS>`: the name of a new run directory before any suffix."""
    return f"{stem}_{(when or dt.datetime.now()).strftime(STAMP_FORMAT)}"


def shared_run_name(stem: str, env: Mapping[str, str] | None = None) -> str | None:
    """The name that every rank of one launch arrives at by itself, from the launch's id: the
    SLURM job (and step), else torchrun's rendezvous id; None when the launch has neither."""
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID"):
        return f"{stem}_slurm-{env['SLURM_JOB_ID']}" + (f".{env['SLURM_STEP_ID']}" if env.get("SLURM_STEP_ID") else "")
    if env.get("TORCHELASTIC_RUN_ID", "none") != "none":
        return f"{stem}_{env['TORCHELASTIC_RUN_ID'][:13]}"
    return None


def slurm_run_name(stem: str) -> str:
    """The run directory's name as an sbatch script writes it (the shell fills in the job id);
    the same name `shared_run_name` gives a rank of that job without a step."""
    return f"{stem}_slurm-${{SLURM_JOB_ID}}"


def create_run_dir(output_dir: str | Path, stem: str, run_name: str | None = None) -> Path:
    """Create and return a new run directory: `run_name`, else `<stem>_<time>`. mkdir is atomic,
    so a name another run holds gets a -2, -3 ... suffix instead of being shared."""
    parent = Path(output_dir)
    parent.mkdir(parents=True, exist_ok=True)
    base = run_name or stamped_name(stem)
    for n in range(1, 1000):
        path = parent / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run directory under {parent}")


def config_sha256(resolved: Mapping) -> str:
    """The sha256 of the resolved config as resolved_config.yaml holds it. The launcher hands it
    to its ranks and each rank compares it with its own: both sides compute it here."""
    return hashlib.sha256(dump_yaml(dict(resolved)).encode()).hexdigest()


def write_config_files(run_dir: Path, resolved: Mapping, overrides: Mapping | None) -> str:
    """Write resolved_config.yaml and overrides.yaml (kept as it is when `overrides` is None, as on
    --resume); return the resolved config's sha256 (`config_sha256` of the same text)."""
    text = dump_yaml(dict(resolved))
    (run_dir / RESOLVED_CONFIG).write_text(text)
    if overrides is not None:
        (run_dir / OVERRIDES).write_text(dump_yaml(dict(overrides)) if overrides else "{}\n")
    return hashlib.sha256(text.encode()).hexdigest()


def handoff_env(run_dir: Path | str, resolved: Mapping | None = None) -> dict[str, str]:
    """The variables that make a started training process use `run_dir` (and, when `resolved` is
    given, refuse to train if it resolves a different config)."""
    env = {RUN_DIR_ENV: str(run_dir)}
    if resolved is not None:
        env[CONFIG_SHA_ENV] = config_sha256(resolved)
    return env


def handed_over_run_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The run directory a launcher or sweep handed to this process, if any."""
    value = (os.environ if env is None else env).get(RUN_DIR_ENV)
    return Path(value) if value else None


def handed_over_sha(env: Mapping[str, str] | None = None) -> str | None:
    return (os.environ if env is None else env).get(CONFIG_SHA_ENV) or None


def remove_if_empty(run_dir: Path) -> bool:
    """Remove a run directory that nothing was written to (a start that failed before the run
    began); True when removed. A directory with anything in it stays."""
    try:
        run_dir.rmdir()
        return True
    except OSError:
        return False
