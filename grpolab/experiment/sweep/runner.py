"""The trial loop, one for every strategy and every backend: ask the strategy for a parameter
set, write its trial file(s) (one per seed), start each as a training run, record every run that
ends, tell the strategy the trial's result, and end with the compare table of all runs.

A trial file is made through the config loader, so the base file's comments stay and changed
values are marked. Each run's directory is created here through grpolab.run.run_dir (the one
owner of run names) and handed to `python -m grpolab train` in its environment."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.yaml_io import edit_lock, inline_yaml, write_atomic
from grpolab.run import metrics
from grpolab.run.exit_codes import EXIT_GUARD_STOP, EXIT_INTERRUPTED, EXIT_SIGNAL
from grpolab.run.run_dir import create_run_dir, handoff_env, remove_if_empty

from ..runs import GONE, is_run_dir, load_run
from .backends import LocalBackend, SlurmOptions, Unit, slurm_backend
from .spec import SEED_KEY, Sweep
from .strategies import COMPLETE, FAIL, PRUNED, Suggestion, make_strategy, trial_stem

# Every run starts through the one entry point that every other start uses.
TRAIN_COMMAND = [sys.executable, "-m", "grpolab", "train"]


@dataclass
class Trial:
    """One trial file: a parameter set (and a seed, when the sweep has `seeds:`)."""

    index: int  # 1-based trial number
    params: dict
    path: Path
    text: str
    loader: GRPOConfigLoader
    seed: int | None = None


# ------------------------------------------------------------------------- trial files
def make_trial(sweep: Sweep, index: int, total: int, params: dict, seed: int | None = None) -> Trial:
    loader = GRPOConfigLoader(config_path=sweep.base)
    shown = ", ".join(f"{k} = {inline_yaml(v)}" for k, v in params.items())
    seeded = {SEED_KEY: seed} if seed is not None else {}
    try:
        loader.update_params({**sweep.fixed, **params, **seeded, "logging.group": sweep.name})
    except ConfigError as exc:  # each value was checked alone; this combination is what fails
        raise ConfigError(
            [Problem(p.key, p.message, p.fix, f"{sweep.path}, trial {index} ({shown})") for p in exc.problems]
        ) from None
    common = ", ".join(f"{k} = {inline_yaml(v)}" for k, v in {**sweep.fixed, "logging.group": sweep.name}.items())
    header = (
        f"# Sweep `{sweep.name}` ({sweep.strategy}), trial {index} of {total}, from {sweep.path}\n"
        f"# This trial: {shown}\n"
    )
    if seed is not None:
        header += f"# Seed: {SEED_KEY} = {seed} (this trial runs once per seed: {inline_yaml(sweep.seeds)})\n"
    header += f"# Every trial: {common}\n# Base: {sweep.base}; changed values are marked `# Changed from ...` below.\n"
    path = sweep.config_dir / f"{trial_stem(sweep.base.stem, params, seed)}.yaml"
    return Trial(index, params, path, header + loader.render(), loader, seed)


def make_trials(sweep: Sweep, index: int, total: int, params: dict) -> list[Trial]:
    """The trial files of one parameter set: one, or one per seed."""
    return [make_trial(sweep, index, total, params, seed) for seed in (sweep.seeds or [None])]


def write_trial(trial: Trial, force: bool = False) -> str:
    """Write the trial file: 'wrote', or 'unchanged' when an identical file is there (a dry run
    before the real one). A different file of that name is only replaced with force."""
    # Under the file's lock: two sweeps writing one trial file check and write it in turn.
    with edit_lock(trial.path):
        if trial.path.exists():
            if trial.path.read_text() == trial.text:
                return "unchanged"
            if not force:
                raise ConfigError(
                    Problem(
                        "", "exists with other content.", "delete it, or pass --force to replace it", str(trial.path)
                    )
                )
        write_atomic(trial.path, trial.text, overwrite=force)
        if GRPOConfigLoader(config_path=trial.path).to_dict() != trial.loader.to_dict():
            trial.path.unlink()
            raise ConfigError(
                Problem(
                    "",
                    "internal error: the trial file does not reload to the trial's config; removed.",
                    None,
                    str(trial.path),
                )
            )
        return "wrote"


def check_planned(sweep: Sweep, trials: list[Trial], force: bool) -> None:
    """Before anything is written: no two trials share a file, no file would be overwritten."""
    names = [t.path.name for t in trials]
    if len(set(names)) < len(names):
        raise ConfigError(
            Problem(
                "parameters",
                f"two trials would share a file name ({sorted({n for n in names if names.count(n) > 1})[0]}).",
                "give the values in a form that differs when written",
                str(sweep.path),
            )
        )
    for trial in trials:
        if trial.path.exists() and trial.path.read_text() != trial.text and not force:
            write_trial(trial)  # raises: say so before anything is written


# ------------------------------------------------------------------------- runs
def new_unit(trial: Trial) -> Unit:
    """Create the run's directory (named after the trial file) and the command that trains in it."""
    run_dir = create_run_dir(trial.loader.config.output_dir, trial.path.stem)
    command = [*TRAIN_COMMAND, "--config", str(trial.path)]
    # An absolute path: a SLURM task or a launcher may start in another folder.
    return Unit(trial, run_dir, command, handoff_env(run_dir.resolve(), trial.loader.to_dict()))


def unit_record(unit: Unit, code: int) -> dict:
    trial = unit.trial
    record = {"trial": trial.index, "config": str(trial.path), "params": trial.params}
    if trial.seed is not None:
        record["seed"] = trial.seed
    record.update(run_dir=str(unit.run_dir), exit_code=code)
    remove_if_empty(unit.run_dir)  # the start failed before the run wrote anything
    if is_run_dir(unit.run_dir):
        status = load_run(unit.run_dir).status
        # A crash the pipeline could not record leaves "running" behind: the exit code says more.
        record["status"] = "failed" if code != 0 and status in ("running", GONE) else status
    else:
        record["status"] = "failed"
        record["run_dir"] = None
        if (unit.run_dir / "output.log").is_file():
            record["log"] = str(unit.run_dir / "output.log")
    if unit.stopped:
        record["status"] = "pruned"
    if unit.error:
        record["error"] = unit.error
    return record


class SweepRecord:
    """sweep_<name>_<time>.json in the base config's output_dir, rewritten after every run."""

    def __init__(self, sweep: Sweep, write: bool):
        self.sweep, self.write = sweep, write
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.records: list[dict] = []
        self.path: Path | None = None

    @property
    def folder(self) -> Path:
        return Path(GRPOConfigLoader(config_path=self.sweep.base, overrides=self.sweep.fixed).config.output_dir)

    def add(self, record: dict) -> None:
        self.records.append(record)
        self.records.sort(key=lambda r: (r.get("trial", 0), r.get("seed", -1)))
        if not self.write:
            return
        if self.path is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path = self.folder / f"sweep_{self.sweep.name}_{self.stamp}.json"
        summary = {
            "sweep": self.sweep.name,
            "file": str(self.sweep.path),
            "strategy": self.sweep.strategy,
            "metric": self.sweep.metric,
            "trials": self.records,
        }
        if self.sweep.seeds:
            summary["seeds"] = self.sweep.seeds
        self.path.write_text(json.dumps(summary, indent=2, default=str) + "\n")


class _TrialState:
    """A parameter set in flight: its runs (one per seed) and what they ended with."""

    def __init__(self, suggestion: Suggestion, trials: list[Trial]):
        self.suggestion, self.trials = suggestion, trials
        self.values: list[float | None] = []
        self.pruned = False
        self.failed = False
        self.waiting: list[Suggestion] = []  # repeats of the same parameters (TPE may propose them again)

    @property
    def key(self) -> str:
        return self.trials[0].path.name

    def done(self) -> bool:
        return len(self.values) == len(self.trials)

    def objective(self) -> float | None:
        """The mean over the seeds that finished (None when none did)."""
        finished = [v for v in self.values if v is not None]
        return sum(finished) / len(finished) if finished else None


def run_sweep(
    sweep: Sweep,
    dry_run: bool = False,
    force: bool = False,
    out=print,
    backend=None,
    parallel: int = 1,
    gpus_per_trial: int | None = None,
    slurm: SlurmOptions | None = None,
) -> int:
    """Run the whole sweep; returns 0, 1 when a trial failed, or the exit code of an interruption.
    Runs go to `backend` when given, else to SLURM with `slurm`, else here (`parallel` at once)."""
    strategy = make_strategy(sweep)
    record = SweepRecord(sweep, write=not dry_run)
    planned: list[list[Trial]] | None = None
    if strategy.planned is not None:
        # Build (and so validate) every trial before writing any file.
        total = len(strategy.planned)
        planned = [make_trials(sweep, i, total, p) for i, p in enumerate(strategy.planned, 1)]
        check_planned(sweep, [t for group in planned for t in group], force)
    if not dry_run and backend is None:
        if slurm is not None:
            backend = slurm_backend(record.folder / f"sweep_{sweep.name}_{record.stamp}_slurm", slurm)
        else:
            backend = LocalBackend(parallel, gpus_per_trial)
    if not dry_run:
        if not isinstance(backend, LocalBackend) or backend.slots is not None:
            out(f"sweep {sweep.name}: {backend.describe()}")
        if sweep.strategy == "optuna" and backend.capacity is None:
            out(
                f"note: all {sweep.trials} optuna trials are proposed at once, before any result (so TPE "
                "learns nothing); pass --parallel N to submit N at a time"
            )

    code = 0
    seen: dict[str, _TrialState] = {}  # trial file -> its state, for parameters proposed again
    queue: list[tuple[_TrialState, Trial]] = []  # runs written, not started yet
    running: list[tuple[_TrialState, Unit]] = []
    stopping = exhausted = False
    last_report = 0.0

    def finish_trial(state: _TrialState) -> None:
        value = state.objective()
        result = PRUNED if state.pruned else (FAIL if value is None else COMPLETE)
        for suggestion in [state.suggestion, *state.waiting]:
            strategy.tell(suggestion, value, result)

    def next_trial() -> bool:
        """Ask for one more parameter set and queue its runs; False when there is none."""
        nonlocal code
        suggestion = strategy.ask()
        if suggestion is None:
            return False
        n, total = suggestion.number, strategy.total
        try:
            trials = planned[n - 1] if planned is not None else make_trials(sweep, n, total, suggestion.params)
        except ConfigError as exc:  # a combination the loader rejects: a failed trial, not a failed sweep
            out(f"[{n}/{total}] invalid combination {suggestion.params}: {exc}")
            strategy.tell(suggestion, None, FAIL)
            record.add({"trial": n, "params": suggestion.params, "status": "invalid", "error": str(exc)})
            code = 1
            return True
        key = trials[0].path.name
        if key in seen:
            out(f"[{n}/{total}] TPE repeated {key}; reusing its result")
            earlier = seen[key]
            if earlier.done() or dry_run:
                strategy.tell(suggestion, earlier.objective(), PRUNED if earlier.pruned else COMPLETE)
            else:
                earlier.waiting.append(suggestion)
            return True
        state = _TrialState(suggestion, trials)
        seen[key] = state
        for trial in trials:
            out(f"[{n}/{total}] {write_trial(trial, force)} {trial.path}")
            if not dry_run:
                queue.append((state, trial))
        return True

    if dry_run:
        while next_trial():
            pass
        out(f"dry run: trial configs are in {sweep.config_dir}; nothing was trained (run again without --dry-run)")
        return 0
    # One run at a time in the terminal says nothing extra; elsewhere each start and end is a line.
    announce = not isinstance(backend, LocalBackend) or backend.slots is not None
    while True:
        try:
            if not stopping:
                capacity = backend.capacity  # None: every run at once (a SLURM array)
                while not exhausted and (capacity is None or len(running) + len(queue) < capacity):
                    exhausted = not next_trial()
                batch = []
                while queue and (capacity is None or len(running) + len(batch) < capacity):
                    batch.append(queue.pop(0))
                if batch:
                    units = [(state, new_unit(trial)) for state, trial in batch]
                    for _, unit in units:
                        out(f"$ {' '.join(unit.command)}" + (f"  (run dir {unit.run_dir})" if announce else ""))
                    try:
                        backend.start([unit for _, unit in units])
                    except BaseException:
                        for _, unit in units:  # nothing ran in them: leave no empty run directories
                            remove_if_empty(unit.run_dir)
                        raise
                    for _, unit in units:
                        if unit.note:
                            out(f"  trial {unit.trial.index}{_seed_text(unit.trial)}: {unit.note}")
                    running += units
            if not running and (stopping or (exhausted and not queue)):
                break
            ended = []
            for state, unit in running:
                exit_code = backend.poll(unit)
                if exit_code is not None:
                    ended.append((state, unit, exit_code))
            for state, unit, exit_code in ended:
                running.remove((state, unit))
                run = unit_record(unit, exit_code)
                value = None
                if sweep.strategy == "optuna" and run["run_dir"] and exit_code == 0:
                    value = load_run(run["run_dir"]).final(sweep.metric)
                    run["objective"] = value
                record.add(run)
                state.values.append(value)
                # A guard stop is a trial result (the run went nowhere), not a crash: optuna prunes it.
                guarded = exit_code == EXIT_GUARD_STOP
                state.pruned = state.pruned or unit.stopped or guarded
                if state.done():
                    finish_trial(state)
                label = f"trial {unit.trial.index}{_seed_text(unit.trial)}"
                if unit.stopped:
                    out(f"{label} pruned (its {sweep.metric} is below the median of earlier trials)")
                elif guarded:
                    out(f"{label} stopped by the guard (see `grpolab doctor {unit.run_dir}`); going on")
                elif exit_code in EXIT_INTERRUPTED:
                    out("sweep interrupted: the remaining trials were not run")
                    code, stopping = exit_code, True
                    queue.clear()
                elif exit_code != 0:
                    out(f"{label} failed (exit {exit_code}){': ' + unit.error if unit.error else ''}; going on")
                    code = code or 1
                elif announce:
                    out(f"{label} {run['status']}: {unit.run_dir}")
            if strategy.prunes and running and time.time() - last_report >= 2.0:
                last_report = time.time()
                _report(strategy, sweep, running, backend)
            if not ended and running:
                time.sleep(backend.poll_seconds)
        except KeyboardInterrupt:
            if not stopping:
                out("sweep interrupted: waiting for the running trials to save a checkpoint and stop")
                backend.interrupt([unit for _, unit in running])
            stopping, code = True, EXIT_SIGNAL["SIGINT"]
            queue.clear()

    finish(sweep, record.records, record.path, out)
    return code


def finish(sweep: Sweep, records: list[dict], record_path: Path | None, out=print) -> None:
    """The compare table of every run that left a run directory, and its plot."""
    from ..compare import compare_table, plot

    runs = [load_run(r["run_dir"]) for r in records if r.get("run_dir") and is_run_dir(Path(r["run_dir"]))]
    failed = [r for r in records if r.get("status") != "finished"]
    unit = "runs" if sweep.seeds else "trials"
    out(
        f"\nsweep {sweep.name}: {len(records)} {unit}, {len(records) - len(failed)} finished"
        + (f", {len(failed)} not ({', '.join(_label(r) for r in failed)})" if failed else "")
    )
    if runs:
        out(compare_table(runs, sweep.metric))
    if record_path is not None:
        out(f"sweep record: {record_path}")
        if runs:
            try:
                png = record_path.with_suffix(".png")
                plot(runs, [sweep.metric], png)
                out(f"plot: {png}")
            except ImportError:
                pass  # matplotlib is optional


def _label(record: dict) -> str:
    return str(record.get("trial")) + (f" seed {record['seed']}" if "seed" in record else "")


def _seed_text(trial: Trial) -> str:
    return f" seed {trial.seed}" if trial.seed is not None else ""


def _report(strategy, sweep: Sweep, running: list, backend) -> None:
    """Intermediate values for the pruner, read from each running trial's metrics.jsonl. A trial
    with several seeds reports through its first seed's run; pruning stops all of its runs."""
    for state, unit in running:
        if unit.trial is not state.trials[0] or state.pruned:
            continue
        for step, value in metrics.series(metrics.read(unit.run_dir), sweep.metric):
            if step <= unit.reported:
                continue
            unit.reported = step
            if strategy.report(state.suggestion, step, value):
                state.pruned = True
                for other_state, other in running:
                    if other_state is state:
                        other.stopped = True
                        backend.stop(other)
                break
