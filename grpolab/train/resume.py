"""`--resume RUN_DIR`: the run's own resolved config, and the checkpoint to continue from."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import fields, replace
from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.errors import INVALID_CONFIG, NO_CHECKPOINT
from grpolab.config.keys import diff
from grpolab.config.yaml_io import real_path
from grpolab.run import metrics
from grpolab.run.record import RunInfo, Summary, TrainerState
from grpolab.run.run_dir import live_lock


def resume_config(request) -> GRPOConfigLoader:
    """A resumed run uses its own resolved config; a different one given now is refused unless --force."""
    run_dir = Path(request.resume)
    resolved = run_dir / "resolved_config.yaml"
    if not resolved.is_file():
        raise _refused(
            f"`{run_dir}` is not a run directory (no resolved_config.yaml).", "pass a folder created by a previous run"
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
    # Training longer (a larger max_steps or num_train_epochs) is what --resume of a finished run
    # is for: allowed without --force; any other change is refused.
    differ = [row for row in diff(saved.to_dict(), requested.to_dict()) if row[0] not in EXTENDS]
    if differ:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in differ[:5])
        fix = "drop --config/--set to resume as it was, or add --force to resume with the new values"
        raise _refused(f"the config given differs from the run's ({shown}).", fix)
    return requested  # the run's config, with a longer max_steps / num_train_epochs if one was given


def prepare(request):
    """A resumed run continues where it was started: --resume as an absolute path, and the
    working directory the run recorded, so its relative data, reward and config paths still
    resolve when resuming from elsewhere."""
    # absolute, with the user's links kept: an error names the link they gave
    request = replace(request, resume=os.path.abspath(Path(request.resume).expanduser()))
    check_records(Path(request.resume))
    recorded = RunInfo.load(request.resume).cwd
    if recorded and Path(recorded).is_dir() and real_path(recorded) != Path.cwd().resolve():
        print(f"note: resuming in the run's working directory {recorded} (its relative paths start there)")
        os.chdir(recorded)
    return request


def check_records(run_dir: Path) -> None:
    """Before anything is written: every record resume reads (run_info.json, summary.json,
    metrics.jsonl, and the trainer_state.json of the checkpoint it continues from) has the
    types it needs. A wrong one would stop transformers mid-resume, after the run's record
    was rewritten as failed; here it is an error naming the file and field, and nothing changes."""
    run_fix = "correct the field, or delete it from the file (an absent field reads as unknown)"
    unreadable = [*RunInfo.load(run_dir).unreadable, *Summary.load(run_dir).unreadable]
    problems = [Problem("", why, run_fix, str(run_dir)) for why in unreadable]
    problems += [
        Problem("", why, "correct or delete that line", str(run_dir)) for why in metrics.read_checked(run_dir)[1]
    ]
    if (newest := next((f for f in _checkpoints(run_dir) if incomplete(f) is None), None)) is not None:
        data = json.loads((newest / TrainerState.FILE).read_text())  # it parses: incomplete() said so
        state = TrainerState.from_dict(data if isinstance(data, dict) else {})
        unknown = [f"{state.FILE}: `{key}` is not a key transformers' trainer state has" for key in _unknown(state)]
        whys = state.unreadable + unknown if isinstance(data, dict) else [f"{state.FILE}: should be a JSON object"]
        fix = f"restore the value transformers wrote, or delete {newest.name} to resume from the checkpoint before it"
        problems += [Problem("", why, fix, str(newest)) for why in whys]
    if problems:
        raise ConfigError(problems, NO_CHECKPOINT)


def _unknown(state) -> list[str]:
    """Keys of a trainer_state.json that transformers' TrainerState would refuse (it takes **keys)."""
    if not state.extra:
        return []
    from transformers.trainer_callback import TrainerState as Theirs

    return [key for key in state.extra if key not in {f.name for f in fields(Theirs)}]


# What `--resume` may change without --force: how far to train. The rest of a resumed run is its own.
EXTENDS = ("training.max_steps", "training.num_train_epochs")


def finished(request, loader) -> str | None:
    """Why the run needs no more training, or None. A run that trained as far as its config asks
    is finished: resuming it would add a checkpoint of unchanged weights, duplicate metric rows
    and a step past max_steps, so nothing is changed and the way to train longer is said."""
    run_dir = Path(request.resume)
    info = RunInfo.load(run_dir)
    newest = next((f for f in _checkpoints(run_dir) if incomplete(f) is None), None)
    state = TrainerState.load(newest) if newest is not None else TrainerState()
    steps = [s for s in (state.global_step, info.global_step if info.status == "finished" else None) if s is not None]
    if not steps:
        return None
    step = max(steps)
    training = loader.config.training
    if training.max_steps > 0:
        done = step >= training.max_steps
        asked = f"training.max_steps {training.max_steps}"
        longer = f"--set training.max_steps={max(step * 2, step + 1)}"
    else:  # by epochs: finished when the last run's own end was reached with no more epochs asked
        ran = state.num_train_epochs if state.num_train_epochs is not None else 0
        done = info.status == "finished" and training.num_train_epochs <= ran
        asked = f"training.num_train_epochs {training.num_train_epochs:g}"
        longer = f"--set training.num_train_epochs={ran * 2:g}"
    if not done:
        return None
    return (
        f"nothing to resume: {run_dir} is finished (it trained {step} steps, {asked}); nothing was changed. "
        f"To train longer: grpolab train --resume {run_dir} {longer}"
    )


def _checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoint-N folders of a run, newest first."""
    return sorted(
        (p for p in Path(run_dir).glob("checkpoint-*") if p.is_dir() and p.name.rpartition("-")[2].isdigit()),
        key=checkpoint_step,
        reverse=True,
    )


def last_checkpoint(run_dir: Path) -> str:
    """The newest complete checkpoint-N: a run killed while saving leaves a half-written newest
    one, which is skipped (and said) in favour of the one before."""
    folders, new_run = _checkpoints(run_dir), "start a new run instead"
    if not folders:
        raise _refused(f"`{run_dir}` has no checkpoint-N folder to resume from.", new_run, NO_CHECKPOINT)
    for folder in folders:
        why = incomplete(folder)
        if why is None:
            print(f"resuming from {folder.name}")
            return str(folder)
        print(f"note: skipping {folder.name}: {why} (a save cut short)")
    why = f"no complete checkpoint in `{run_dir}`: every checkpoint-N is cut short."
    raise _refused(why, new_run, NO_CHECKPOINT)


def incomplete(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from, or None: the trainer state must parse, and the
    weights must be there with whole safetensors headers (the save writes the state last)."""
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return "trainer_state.json is missing or unreadable"
    weights = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin"), *folder.glob("global_step*")]
    if not weights:
        return "it holds no model weights"
    for path in folder.glob("*.safetensors"):
        try:
            with path.open("rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                json.loads(handle.read(size))
        except (OSError, ValueError, struct.error):
            return f"{path.name} is truncated"
    return None


def check_resumable(request, resolved) -> None:
    """Before anything loads: the run is not training right now, and keeps its world size (another
    one silently changes the effective and generation batches, and a sharded checkpoint would not load)."""
    if holder := live_lock(Path(request.resume)):
        why = f"the run is still training ({holder}); two trainers would write one directory."
        raise _refused(why, "wait for it to end or stop it, then resume")
    before = RunInfo.load(request.resume).world_size
    if not before or before == resolved.world_size or request.force:
        return
    raise _refused(
        f"the run trained on {before} process(es), and this start has {resolved.world_size}: the effective "
        "batch would change, and a sharded checkpoint would not load.",
        f"resume with {before} processes (`--set cluster.num_processes={before}` per machine), or add --force "
        f"to continue on {resolved.world_size}",
    )


def _refused(why: str, fix: str, kind: str = INVALID_CONFIG) -> ConfigError:
    return ConfigError.of("", why, fix, "--resume", kind)


def checkpoint_step(checkpoint: str) -> int:
    return int(Path(checkpoint).name.rpartition("-")[2])
