"""The run being recorded: its directory (new, handed over by a launcher, shared by ranks
started by hand, or resumed) and run_info.json, which always ends with a status."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from grpolab.config import ConfigError
from grpolab.config.derive import Derived
from grpolab.run import metrics, provenance
from grpolab.run import run_dir as run_dirs
from grpolab.run.exit_codes import EXIT_FAILED, EXIT_SIGNAL
from grpolab.run.record import RunInfo, now
from grpolab.run.run_dir import WriteFailed, record_rank_error, release_lock, write_failed
from grpolab.train.resume import checkpoint_step, last_checkpoint


@dataclass
class Run:
    """One run being recorded: its directory, run_info.json and how it ended."""

    loader: object
    resolved: object
    dist: object
    dir: Path
    info: object  # grpolab.run.record.RunInfo
    checkpoint: str | None  # the checkpoint a resumed run continues from
    data: object
    derived: Derived
    model_name: str = ""  # the policy's path or Hub id (a LoRA merge reloads it)
    wandb_run: object = None
    eval_before: float | None = None
    exit_code: int = EXIT_FAILED
    checkpoint_bytes: int | None = None  # one checkpoint's size, named when a write fails

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def save_info(self, **values) -> None:
        if self.is_main:
            self.info.update(**values)
            self.info.save(self.dir)

    @contextmanager
    def recording(self):
        """Whatever happens inside (building the trainer, training, saving, scoring), run_info.json
        ends with a status: an exception is recorded as `failed` with its error, then raised; a failed
        write is raised as WriteFailed, whose one line names the disk."""
        try:
            yield self
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            status, code = ("interrupted", EXIT_SIGNAL["SIGINT"]) if interrupted else ("failed", EXIT_FAILED)
            failed_write = None
            if isinstance(exc, OSError | WriteFailed):  # a full disk: its own message, not a traceback
                failed_write = write_failed(exc, self.dir, self.checkpoint_bytes)
            error = str(failed_write) if failed_write else f"{type(exc).__name__}: {exc}"
            try:
                self.save_info(status=status, ended=now(), exit_code=code, error=error)
            except OSError as again:  # the disk is still full: the console says it, the record cannot
                print(f"note: the failure could not be recorded in run_info.json ({again.strerror})", file=sys.stderr)
            if status == "failed" and self.dist.launcher is not None:  # every rank: the launcher reports the first
                record_rank_error(self.dir, self.dist.rank, code, error)
            if self.wandb_run is not None:
                self.wandb_run.finish(exit_code=code)
            if failed_write is not None:
                raise failed_write from None
            raise
        finally:
            if self.is_main:
                release_lock(self.dir)


def _refuse_another_runs_record(path: Path, loader) -> None:
    """A handed-over directory belongs to this run only: one that holds another run's record (a
    finished run, another config, or a live run) is refused. The same config started again after
    a start that never saved a checkpoint (a requeued job) may use it."""
    info = RunInfo.load(path)
    if info.status is None:
        return
    holder = run_dirs.live_lock(path)
    same = info.config_sha256 == run_dirs.config_sha256(loader.to_dict())
    if info.status == "finished" or not same or holder:
        why = f"it is in use ({holder})" if holder else f"status {info.status}" + ("" if same else ", another config")
        raise ConfigError.of(
            "",
            f"`{path}` already holds the record of run {info.run_name} ({why}); a run directory belongs to one run.",
            f"unset {run_dirs.RUN_DIR_ENV} to start a new run, or --resume {path} to continue that one",
            run_dirs.RUN_DIR_ENV,
        )


def _made_by_rank_zero(make) -> Path:
    """Ranks started by hand with nothing to name a shared directory after: rank 0 creates it,
    and the others learn its path once the process group is up."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState()  # joins the process group the launcher set up (the trainer reuses it)
    path = [str(make()) if state.is_main_process else None]
    broadcast_object_list(path, from_process=0)
    return Path(path[0])


def open_run(loader, request, resolved, dist, shared_run_dir, model_name, derived, data) -> Run:
    """The run directory and its record (run_info.json), written by rank 0."""
    cfg = loader.config
    resumed = bool(request.resume)
    if resumed:
        path = Path(request.resume)
    elif handed := run_dirs.handed_over_run_dir() or shared_run_dir:
        path = Path(handed)
        if dist.is_main:
            path.mkdir(parents=True, exist_ok=True)
            _refuse_another_runs_record(path, loader)
    else:
        stem = run_dirs.run_stem(loader.config_path, loader.preset_path)
        make = lambda: run_dirs.create_run_dir(cfg.output_dir, stem, request.run_name)  # noqa: E731
        path = make() if dist.world_size == 1 else _made_by_rank_zero(make)
    checkpoint = last_checkpoint(path) if resumed else None  # before the run's records are touched
    info = RunInfo.load(path) if resumed else RunInfo()
    if resumed and dist.is_main:  # steps logged after the checkpoint (a hard kill) are trained again
        if note := metrics.truncate_after(path, checkpoint_step(checkpoint)).note():
            print(f"note: {note}")
    run = Run(loader, resolved, dist, path, info, checkpoint, data, derived, model_name)
    if dist.is_main:
        run_dirs.take_lock(path)  # `--resume` of a run that is still training is refused
        # A resumed run rewrites only resolved_config.yaml: the same text, unless --force changed values.
        sha = run_dirs.write_config_files(path, loader.to_dict(), None if resumed else loader.overrides)
        fresh = {
            "config_file": str(loader.config_path) if loader.config_path else None,
            "git": provenance.git_info(loader.config_path),
            "started": now(),
        }
        run.save_info(
            **({} if resumed else fresh),
            run_name=path.name,
            command=sys.argv,
            mode=cfg.mode,
            model=model_name,
            packages=provenance.package_versions(),
            host=provenance.host_info(),
            world_size=resolved.world_size,
            device=resolved.device,
            threads_per_process=resolved.threads,
            effective_batch_size=derived.effective_batch_size,
            derived=derived.to_dict(),
            dataset={"rows": len(data.train_set), "dropped_too_long": data.dropped},
            config_sha256=sha,
            status="running",
            pid=os.getpid(),  # lets `grpolab runs list` tell a crashed run from a live one
            cwd=os.getcwd(),  # resolves a relative config_file for `grpolab runs annotate`
            resumed=[*(info.resumed or []), now()] if resumed else None,
        )
    return run
