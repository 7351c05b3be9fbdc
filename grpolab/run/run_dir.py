"""The run directory: one folder per run under output_dir, never reused by another run.

<output_dir>/<config stem>_<YYYYmmdd-HHMMSS>/
    resolved_config.yaml  every value, defaults included (a valid --config file)
    overrides.yaml        what --set / flags changed on top of the files
    run_info.json         git, versions, host, world size, effective batch, sha256, times, status
    metrics.jsonl         every logged step
    summary.json          final and best metrics (and held-out accuracy before/after)
    checkpoint-N/         TRL checkpoints
    model/                the final model (AutoModelForCausalLM.from_pretrained loads it)

Only this module names a run directory: whoever starts training in another process (the launcher,
a sweep) creates it here and hands it over (`handoff_env` / `handed_over_run_dir`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from grpolab.config.errors import CANNOT_WRITE, ConfigError
from grpolab.config.yaml_io import dump_yaml

from .record import number_or, read_json, write_text

RUN_DIR_ENV = "GRPOLAB_RUN_DIR"  # the run directory a started process must use
# Whom the hand-off belongs to: `pid:<pid>@<host>` (a local launch or sweep: only its descendants)
# or `slurm:<job id>` (one SLURM job). A GRPOLAB_RUN_DIR left in a shell by an earlier launch or an
# sbatch script is then ignored instead of making a new run write into another run's directory.
RUN_DIR_OWNER_ENV = "GRPOLAB_RUN_DIR_OWNER"
CONFIG_SHA_ENV = "GRPOLAB_CONFIG_SHA256"  # the resolved config it must arrive at
STAMP_FORMAT = "%Y%m%d-%H%M%S"
RESOLVED_CONFIG = "resolved_config.yaml"
OVERRIDES = "overrides.yaml"
LOCK = ".grpolab.lock"  # held by the main process of the run writing this directory
_IGNORED: set[str] = set()


def run_stem(config_path: Path | str | None, preset_path: Path | str | None = None) -> str:
    """A run is named after its config file, or after the preset when it has none."""
    if (source := config_path or preset_path) is None:
        raise ValueError("a run needs a config file or a preset to be named after")
    return Path(source).stem


def stamped_name(stem: str, when: dt.datetime | None = None) -> str:
    """`<stem>_<YYYYmmdd-HHMMSS>`: the name of a new run directory before any suffix."""
    return f"{stem}_{(when or dt.datetime.now()).strftime(STAMP_FORMAT)}"


def shared_run_name(stem: str, env: Mapping[str, str] | None = None) -> str | None:
    """The name every rank of one launch arrives at by itself (SLURM job and step, else torchrun's id)."""
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID"):
        return f"{stem}_slurm-{env['SLURM_JOB_ID']}" + (f".{env['SLURM_STEP_ID']}" if env.get("SLURM_STEP_ID") else "")
    if env.get("TORCHELASTIC_RUN_ID", "none") != "none":
        return f"{stem}_{env['TORCHELASTIC_RUN_ID'][:13]}"
    return None


def slurm_run_name(stem: str) -> str:
    """The name as an sbatch script writes it: `shared_run_name`'s for that job without a step."""
    return f"{stem}_slurm-${{SLURM_JOB_ID}}"


def create_run_dir(output_dir: str | Path, stem: str, run_name: str | None = None) -> Path:
    """A new run directory `run_name`, else `<stem>_<time>`; a name taken gets -2, -3 ... (mkdir is atomic)."""
    parent = Path(output_dir)
    parent.mkdir(parents=True, exist_ok=True)
    base = run_name or stamped_name(stem)
    for path in [parent / base, *(parent / f"{base}-{n}" for n in range(2, 1000))]:
        with contextlib.suppress(FileExistsError):
            path.mkdir()
            return path
    raise RuntimeError(f"could not create a run directory under {parent}")


def config_sha256(resolved: Mapping) -> str:
    """The sha256 of resolved_config.yaml's text: the launcher and each rank compute it here."""
    return hashlib.sha256(dump_yaml(dict(resolved)).encode()).hexdigest()


def write_config_files(run_dir: Path, resolved: Mapping, overrides: Mapping | None) -> str:
    """Write resolved_config.yaml and overrides.yaml (kept when None: --resume); return the sha256."""
    write_text(run_dir / RESOLVED_CONFIG, text := dump_yaml(dict(resolved)))
    if overrides is not None:
        write_text(run_dir / OVERRIDES, dump_yaml(dict(overrides)) if overrides else "{}\n")
    return hashlib.sha256(text.encode()).hexdigest()  # config_sha256 of the same text


def handoff_env(run_dir: Path | str, resolved: Mapping | None = None) -> dict[str, str]:
    """The variables that make a started process use `run_dir` (and refuse a config other than `resolved`)."""
    env = {RUN_DIR_ENV: str(run_dir), RUN_DIR_OWNER_ENV: f"pid:{_me()}"}
    if resolved is not None:
        env[CONFIG_SHA_ENV] = config_sha256(resolved)
    return env


def handed_over_run_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The run directory handed to this process; one bound to another launch is ignored with a note."""
    env = os.environ if env is None else env
    if not (value := env.get(RUN_DIR_ENV)):
        return None
    owner = env.get(RUN_DIR_OWNER_ENV)
    if owner is None or _owned_by_this_launch(owner, env):
        return Path(value)
    if value not in _IGNORED:
        _IGNORED.add(value)
        print(f"note: ignoring {RUN_DIR_ENV}={value}: it was left by another launch ({owner})", file=sys.stderr)
    return None


def _owned_by_this_launch(owner: str, env: Mapping[str, str]) -> bool:
    kind, _, ident = owner.partition(":")
    if kind == "slurm":
        return env.get("SLURM_JOB_ID") == ident
    pid, _, host = ident.partition("@")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # started on another machine (a SLURM array trial): nothing to check here
    return int(pid) in _ancestors()


def _ancestors() -> set[int]:
    """This process and its parents, from /proc (elsewhere: only this process and its parent)."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            found.add(os.getppid())
            break
    return found


def handed_over_sha(env: Mapping[str, str] | None = None) -> str | None:
    return (os.environ if env is None else env).get(CONFIG_SHA_ENV) or None


def remove_if_empty(run_dir: Path) -> bool:
    """Remove a run directory nothing was written to (a start that failed); True when removed."""
    with contextlib.suppress(OSError):
        run_dir.rmdir()
        return True
    return False


def _me() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def take_lock(run_dir: Path) -> Path:
    """Mark `run_dir` as written by this process (a dead process's lock on this host is taken over)."""
    path = Path(run_dir) / LOCK
    try:
        handle = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "w")
    except FileExistsError:
        if live_lock(run_dir):
            raise
        handle = path.open("w")
    with handle:
        handle.write(_me() + "\n")
    return path


def release_lock(run_dir: Path) -> None:
    path = Path(run_dir) / LOCK
    with contextlib.suppress(OSError):
        if path.read_text().strip() == _me():
            path.unlink()


def live_lock(run_dir: Path) -> str | None:
    """ "pid N on HOST" when another live process (or any on another host) holds `run_dir`'s lock."""
    try:
        pid, _, host = (Path(run_dir) / LOCK).read_text().strip().partition("@")
    except OSError:
        return None
    if not pid.isdigit() or f"{pid}@{host}" == _me():
        return None
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return f"pid {pid} on {host}"


def record_rank_error(run_dir: Path, rank: int, exit_code: int, message: str) -> None:
    """A rank's first error (later ones are fallout), so the launcher reports the first rank to fail once."""
    path = Path(run_dir) / "logs" / f"error-rank{rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(
            json.dumps({"rank": rank, "exit_code": exit_code, "message": message, "time": time.time()}) + "\n"
        )


def rank_errors(run_dir: Path) -> list[dict]:
    """The errors ranks recorded, the first to fail first (by time, then rank); the rest are usually fallout."""
    found = filter(None, (read_json(path) for path in (Path(run_dir) / "logs").glob("error-rank*.json")))
    return sorted(found, key=lambda e: (number_or(e.get("time"), float("inf")), number_or(e.get("rank"), 0)))


def started(run_dir: Path) -> bool:
    """Whether a run began in `run_dir` (it has a record), as opposed to a launch that failed first."""
    return (Path(run_dir) / "run_info.json").is_file()


def _existing(folder: Path) -> Path:
    """`folder`, or the nearest folder above it that exists (where it would be made)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def disk_room(folder: Path | str) -> tuple[str, int]:
    """(the mount point of the disk holding `folder`, its free bytes)."""
    mount = existing = _existing(Path(folder).absolute())
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return str(mount), shutil.disk_usage(existing).free


def size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def check_writable(folder: Path | str, key: str, needed: int | None = None) -> None:
    """Refuse, before the model loads, a folder that cannot be written or a disk without room for one
    checkpoint of `needed` bytes (a full disk after minutes of loading is lost time). Creates nothing."""
    existing = _existing(folder := Path(folder))
    problem, fix = None, "choose a folder you can write to, e.g. `output_dir: ./grpo_results`"
    if not existing.is_dir():
        problem = f"`{existing}` is a file, so `{folder}` cannot be made"
    else:
        try:
            tempfile.TemporaryFile(dir=existing).close()
        except OSError as exc:
            problem = f"`{folder}` cannot be written: {exc.strerror or exc} in `{existing}`"
    if problem is None and needed:
        mount, free = disk_room(existing)
        if free < needed:
            problem = (
                f"`{folder}` is on the disk mounted at {mount}, which has {size(free)} free; one checkpoint "
                f"(weights and optimizer states, from the memory plan) needs about {size(needed)}"
            )
            fix = f"free at least {size(needed - free)} on {mount}, or set `output_dir` to a folder on a larger disk"
    if problem:
        raise ConfigError.of(key, problem + ".", fix, kind=CANNOT_WRITE)


class WriteFailed(Exception):
    """A file of the run could not be written during training (a full disk, a quota, an I/O error)."""


def write_failed(exc: BaseException, run_dir: Path | str, needed: int | None, target=None) -> WriteFailed:
    """The one message for a write of the run that failed (`target`: what was being written)."""
    if isinstance(exc, WriteFailed):
        return exc
    target = getattr(exc, "filename", None) or target or run_dir
    if isinstance(exc, OSError):
        why = exc.strerror or str(exc)
    else:  # torch's and safetensors' writers: "unexpected pos 86656 vs 86548" and the like
        why = f"the write was cut short ({(str(exc).strip().splitlines() or [type(exc).__name__])[0]})"
    code = errno.errorcode.get(getattr(exc, "errno", None) or 0)
    mount, free = disk_room(run_dir)
    room = f"; one checkpoint needs about {size(needed)}" if needed else ""
    return WriteFailed(
        f"could not write `{target}`: {why}{f' ({code})' if code else ''}. The disk mounted at {mount} has "
        f"{size(free)} free{room}. Free space there (or raise the quota), then `grpolab train --resume {run_dir}` "
        "continues from the last complete checkpoint"
    )
