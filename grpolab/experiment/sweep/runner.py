"""The trial loop for every strategy and backend: write each parameter set's trial file(s), train each
in a run directory made through grpolab.run.run_dir (the one owner of run names), record, compare."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.errors import FILE_EXISTS
from grpolab.config.yaml_io import edit_lock, inline_yaml, real_path, write_atomic
from grpolab.run import metrics
from grpolab.run.exit_codes import EXIT_GUARD_STOP, EXIT_INTERRUPTED, EXIT_SIGNAL
from grpolab.run.run_dir import create_run_dir, handoff_env, remove_if_empty

from ..runs import GONE, is_run_dir, load_run
from .backends import LocalBackend, SlurmOptions, SubmititBackend, Unit
from .spec import SEED_KEY, Sweep
from .strategies import COMPLETE, FAIL, PRUNED, Strategy, Suggestion, make_strategy, trial_stem

# Every run starts through the one entry point that every other start uses.
TRAIN_COMMAND = [sys.executable, "-m", "grpolab", "train"]
Backend = LocalBackend | SubmititBackend


@dataclass
class Trial:
    """One trial file: a parameter set (and a seed, when the sweep has `seeds:`)."""

    index: int  # 1-based trial number
    params: dict
    path: Path
    text: str
    loader: GRPOConfigLoader
    seed: int | None = None


def make_trial(sweep: Sweep, index: int, total: int, params: dict, seed: int | None = None) -> Trial:
    loader = GRPOConfigLoader(config_path=sweep.base)
    shown = ", ".join(f"{k} = {inline_yaml(v)}" for k, v in params.items())
    seeded = {SEED_KEY: seed} if seed is not None else {}
    try:
        loader.update_params({**sweep.fixed, **params, **seeded, "logging.group": sweep.name})
    except ConfigError as exc:  # each value was checked alone; this combination is what fails
        where = f"{sweep.path}, trial {index} ({shown})"
        raise ConfigError([Problem(p.key, p.message, p.fix, where) for p in exc.problems]) from None
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
    """Write the trial file: 'wrote', or 'unchanged' (an identical one: a dry run before); force replaces."""
    # Under the file's lock: two sweeps writing one trial file check and write it in turn.
    with edit_lock(trial.path):
        if trial.path.is_file() and trial.path.read_text() == trial.text:
            return "unchanged"
        write_atomic(trial.path, trial.text, overwrite=force)
        return "wrote"


def check_planned(sweep: Sweep, trials: list[Trial], force: bool) -> None:
    """Before anything is written: no two trials share a file, no file would be overwritten."""
    names = [t.path.name for t in trials]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        fix = "give the values in a form that differs when written"
        raise ConfigError.of("parameters", f"two trials would share a file name ({twice[0]}).", fix, str(sweep.path))
    for trial in trials:
        if trial.path.exists() and trial.path.read_text() != trial.text and not force:
            fix = "delete it, or pass --force to replace it"
            raise ConfigError.of("", "exists with other content.", fix, str(trial.path), FILE_EXISTS)


def new_unit(trial: Trial) -> Unit:
    """Create the run's directory (named after the trial file) and the command that trains in it."""
    run_dir = create_run_dir(trial.loader.config.output_dir, trial.path.stem)
    command = [*TRAIN_COMMAND, "--config", str(trial.path)]
    # An absolute path: a SLURM task or a launcher may start in another folder.
    return Unit(trial, run_dir, command, handoff_env(real_path(run_dir), trial.loader.to_dict()))


def unit_record(unit: Unit, code: int) -> dict:
    trial = unit.trial
    record = {"trial": trial.index, "config": str(trial.path), "params": trial.params}
    if trial.seed is not None:
        record["seed"] = trial.seed
    record.update(run_dir=str(unit.run_dir), exit_code=code)
    remove_if_empty(unit.run_dir)  # the start failed before the run wrote anything
    if is_run_dir(unit.run_dir):
        run = load_run(unit.run_dir)
        # A crash the pipeline could not record leaves "running" behind: the exit code says more.
        record["status"] = "failed" if code != 0 and run.status in ("running", GONE) else run.status
        if run.info.guard_stop:
            record["stopped_by"] = run.info.guard_stop.get("kind")  # the guard's finding
    else:
        record.update(status="failed", run_dir=None)
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
        self.folder = Path(GRPOConfigLoader(config_path=sweep.base, overrides=sweep.fixed).config.output_dir)

    def add(self, record: dict) -> None:
        self.records.append(record)
        self.records.sort(key=lambda r: (r.get("trial", 0), r.get("seed", -1)))
        if not self.write:
            return
        if self.path is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path = self.folder / f"sweep_{self.sweep.name}_{self.stamp}.json"
        s = self.sweep
        summary = {"sweep": s.name, "file": str(s.path), "strategy": s.strategy, "metric": s.metric}
        summary.update(trials=self.records, **({"seeds": s.seeds} if s.seeds else {}))
        self.path.write_text(json.dumps(summary, indent=2, default=str) + "\n")


@dataclass
class _TrialState:
    """A parameter set in flight: its runs (one per seed) and what they ended with."""

    suggestion: Suggestion
    trials: list[Trial]
    values: list[float | None] = field(default_factory=list)
    pruned: bool = False
    waiting: list[Suggestion] = field(default_factory=list)  # the same parameters proposed again (TPE may)

    def done(self) -> bool:
        return len(self.values) == len(self.trials)

    def objective(self) -> float | None:
        """The mean over the seeds that finished (None when none did)."""
        finished = [v for v in self.values if v is not None]
        return sum(finished) / len(finished) if finished else None


class SweepLoop:
    """Queue the strategy's parameter sets (`fill`), start what the backend has room for (`start_ready`),
    record each run that ends and tell the strategy (`reap`, `on_end`); Ctrl-C: `interrupt`."""

    def __init__(self, sweep: Sweep, strategy: Strategy, planned, backend, record, force: bool, out):
        self.sweep, self.strategy, self.planned, self.backend = sweep, strategy, planned, backend
        self.record, self.force, self.out = record, force, out
        self.code = 0  # 0, 1 when a trial failed, or the exit code of an interruption
        self.seen: dict[str, _TrialState] = {}  # trial file -> its state, for parameters proposed again
        self.queue: list[tuple[_TrialState, Trial]] = []  # runs written, not started yet
        self.running: list[tuple[_TrialState, Unit]] = []
        self.stopping = self.exhausted = False
        self.last_report = 0.0
        # Runs queued or running at once (a SLURM array without a limit, or a dry run: any number).
        self.limit = math.inf if backend is None or backend.capacity is None else backend.capacity

    def run(self) -> int:
        while True:
            try:
                if not self.stopping:
                    self.fill()
                    self.start_ready()
                if not self.running and (self.stopping or (self.exhausted and not self.queue)):
                    return self.code
                ended = self.reap()
                if self.strategy.prunes and self.running and time.time() - self.last_report >= 2.0:
                    self.last_report = time.time()
                    self.report()
                if not ended and self.running:
                    time.sleep(self.backend.poll_seconds)
            except KeyboardInterrupt:
                self.interrupt()

    def fill(self) -> None:
        while not self.exhausted and len(self.running) + len(self.queue) < self.limit:
            self.exhausted = not self.add_trial()

    def add_trial(self) -> bool:
        """Write and queue one more parameter set's trials; False when there is none. A combination the
        loader rejects is a failed trial, not a failed sweep."""
        suggestion = self.strategy.ask()
        if suggestion is None:
            return False
        n, total, params = suggestion.number, self.strategy.total, suggestion.params
        try:
            trials = self.planned[n - 1] if self.planned is not None else make_trials(self.sweep, n, total, params)
        except ConfigError as exc:
            self.out(f"[{n}/{total}] invalid combination {params}: {exc}")
            self.strategy.tell(suggestion, None, FAIL)
            self.record.add({"trial": n, "params": params, "status": "invalid", "error": str(exc)})
            self.code = 1
            return True
        earlier = self.seen.get(trials[0].path.name)
        if earlier is not None:
            self.out(f"[{n}/{total}] TPE repeated {trials[0].path.name}; reusing its result")
            if earlier.done():
                self.strategy.tell(suggestion, earlier.objective(), PRUNED if earlier.pruned else COMPLETE)
            else:
                earlier.waiting.append(suggestion)
            return True
        state = self.seen[trials[0].path.name] = _TrialState(suggestion, trials)
        for trial in trials:
            self.out(f"[{n}/{total}] {write_trial(trial, self.force)} {trial.path}")
            self.queue.append((state, trial))
        return True

    def start_ready(self) -> None:
        ready = self.queue[: min(len(self.queue), self.limit - len(self.running))]
        if not ready:
            return
        del self.queue[: len(ready)]
        units = [(state, new_unit(trial)) for state, trial in ready]
        for _, unit in units:
            self.out(f"$ {' '.join(unit.command)}" + (f"  (run dir {unit.run_dir})" if self.backend.announces else ""))
        try:
            self.backend.start([unit for _, unit in units])
        except BaseException:
            for _, unit in units:  # nothing ran in them: leave no empty run directories
                remove_if_empty(unit.run_dir)
            raise
        for _, unit in units:
            if unit.note:
                self.out(f"  trial {_numbered(unit.trial.index, unit.trial.seed)}: {unit.note}")
        self.running += units

    def reap(self) -> bool:
        """Record every run that has ended; whether any had."""
        ended = [(state, unit, code) for state, unit in self.running if (code := self.backend.poll(unit)) is not None]
        for state, unit, code in ended:
            self.running.remove((state, unit))
            self.on_end(state, unit, code)
        return bool(ended)

    def on_end(self, state: _TrialState, unit: Unit, exit_code: int) -> None:
        run = unit_record(unit, exit_code)
        value = None
        if self.sweep.strategy == "optuna" and run["run_dir"] and exit_code == 0:
            value = run["objective"] = load_run(run["run_dir"]).final(self.sweep.metric)
        self.record.add(run)
        state.values.append(value)
        # A guard stop is a trial result (the run went nowhere), not a crash: optuna prunes it.
        guarded = exit_code == EXIT_GUARD_STOP
        state.pruned = state.pruned or unit.stopped or guarded
        if state.done():
            result = PRUNED if state.pruned else (FAIL if state.objective() is None else COMPLETE)
            for suggestion in [state.suggestion, *state.waiting]:
                self.strategy.tell(suggestion, state.objective(), result)
        label = f"trial {_numbered(unit.trial.index, unit.trial.seed)}"
        if unit.stopped:
            self.out(f"{label} pruned (its {self.sweep.metric} is below the median of earlier trials)")
        elif guarded:
            self.out(f"{label} stopped by the guard (see `grpolab doctor {unit.run_dir}`); going on")
        elif exit_code in EXIT_INTERRUPTED:
            self.out("sweep interrupted: the remaining trials were not run")
            self.code, self.stopping = exit_code, True
            self.queue.clear()
        elif exit_code != 0:
            self.out(f"{label} failed (exit {exit_code}){': ' + unit.error if unit.error else ''}; going on")
            self.code = self.code or 1
        elif self.backend.announces:
            self.out(f"{label} {run['status']}: {unit.run_dir}")

    def report(self) -> None:
        """Intermediate values for the pruner, from the first seed's metrics.jsonl; pruning stops all seeds."""
        for state, unit in self.running:
            if unit.trial is not state.trials[0] or state.pruned:
                continue
            for step, value in metrics.series(metrics.read(unit.run_dir), self.sweep.metric):
                if step > unit.reported:
                    unit.reported = step
                    if self.strategy.report(state.suggestion, step, value):
                        state.pruned = True
                        for other in [other for other_state, other in self.running if other_state is state]:
                            other.stopped = True
                            self.backend.stop(other)
                        break

    def interrupt(self) -> None:
        """Ctrl-C: the running trials save a checkpoint and stop; nothing new starts."""
        if not self.stopping:
            self.out("sweep interrupted: waiting for the running trials to save a checkpoint and stop")
            self.backend.interrupt([unit for _, unit in self.running])
        self.stopping, self.code = True, EXIT_SIGNAL["SIGINT"]
        self.queue.clear()


def run_sweep(
    sweep: Sweep,
    dry_run: bool = False,
    force: bool = False,
    out=print,
    backend: Backend | None = None,
    parallel: int = 1,
    gpus_per_trial: int | None = None,
    slurm: SlurmOptions | None = None,
) -> int:
    """Run the whole sweep: 0, 1 when a trial failed, or the exit code of an interruption."""
    strategy = make_strategy(sweep)
    record = SweepRecord(sweep, write=not dry_run)
    planned = None
    if strategy.planned is not None:  # build (and so validate) every trial before writing any file
        planned = [make_trials(sweep, i, strategy.total, p) for i, p in enumerate(strategy.planned, 1)]
        check_planned(sweep, [t for group in planned for t in group], force)
    if dry_run:  # write every trial file, train nothing
        loop = SweepLoop(sweep, strategy, planned, None, record, force, out)
        while loop.add_trial():
            pass
        out(f"dry run: trial configs are in {sweep.config_dir}; nothing was trained (run again without --dry-run)")
        return 0
    if backend is None and slurm is not None:
        backend = SubmititBackend(record.folder / f"sweep_{sweep.name}_{record.stamp}_slurm", slurm)
    backend = backend or LocalBackend(parallel, gpus_per_trial)
    if backend.announces:
        out(f"sweep {sweep.name}: {backend.describe()}")
    if sweep.strategy == "optuna" and backend.capacity is None:
        out(
            f"note: all {sweep.trials} optuna trials are proposed at once, before any result (so TPE "
            "learns nothing); pass --parallel N to submit N at a time"
        )
    code = SweepLoop(sweep, strategy, planned, backend, record, force, out).run()
    # The end: the compare table of every run that left a run directory, and its plot.
    from ..compare import compare_table, plot

    records, record_path = record.records, record.path
    runs = [load_run(r["run_dir"]) for r in records if r.get("run_dir") and is_run_dir(Path(r["run_dir"]))]
    failed = [r for r in records if r.get("status") != "finished"]
    unit = "runs" if sweep.seeds else "trials"
    not_finished = ", ".join(_numbered(r.get("trial"), r.get("seed")) for r in failed)
    out(
        f"\nsweep {sweep.name}: {len(records)} {unit}, {len(records) - len(failed)} finished"
        + (f", {len(failed)} not ({not_finished})" if failed else "")
    )
    if runs:
        out(compare_table(runs, sweep.metric))
    if record_path is not None:
        out(f"sweep record: {record_path}")
    if runs and record_path is not None:
        with contextlib.suppress(ImportError):  # matplotlib is optional
            plot(runs, [sweep.metric], png := record_path.with_suffix(".png"))
            out(f"plot: {png}")
    return code


def _numbered(index, seed=None) -> str:
    return f"{index}" + (f" seed {seed}" if seed is not None else "")
