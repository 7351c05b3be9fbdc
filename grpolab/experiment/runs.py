"""Reading run directories: run_info.json, summary.json, metrics.jsonl, resolved_config.yaml. A run
without summary.json (still going, or died) gets one from metrics.jsonl by the pipeline's own rule."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from grpolab.config import ConfigError
from grpolab.config.yaml_io import read_yaml_file, to_plain
from grpolab.run import metrics
from grpolab.run.record import RUN_INFO, SUMMARY, RunInfo, Summary, read_json
from grpolab.run.run_dir import RESOLVED_CONFIG

from .tables import fmt

# What `runs list` reads with no folder given: every `grpo_results*` folder here, so the demo's
# grpo_results_demo and a config's own output_dir (grpo_results_sweep ...) are listed too.
DEFAULT_DIRS = "./grpo_results*"
GONE = "interrupted*"  # recorded as running, but its process no longer exists
UNREADABLE = "unreadable"  # a record holds a field of the wrong type (Run.problems names it)


@dataclass
class Run:
    path: Path
    info: RunInfo = field(default_factory=RunInfo)
    summary: Summary = field(default_factory=Summary)

    @property
    def name(self) -> str:
        return self.info.run_name or self.path.name

    @property
    def status(self) -> str:
        return UNREADABLE if self.problems else effective_status(self.info)

    @property
    def problems(self) -> list[str]:
        """What in the run's records has the wrong type (file and field named); [] when none."""
        return [*self.info.unreadable, *self.summary.unreadable, *self.metric_problems, *self.config_problems]

    @property
    def status_shown(self) -> str:
        """The status, with the finding for a run the guard stopped: `stopped (constant_reward)`."""
        stop = self.info.guard_stop
        return f"{self.status} ({stop.get('kind')})" if stop and self.status == "stopped" else self.status

    @property
    def steps(self) -> int:
        return self.info.global_step or self.summary.step_count

    def final(self, metric: str):
        return self.summary.final.get(metric)

    def best(self, metric: str):
        return self.summary.best.get(metric)

    def metrics(self) -> list[dict]:
        if self._metrics is None:
            self._metrics, self.metric_problems = metrics.read_checked(self.path)
        return self._metrics

    def config(self) -> dict:
        """The resolved config; {} when absent or unreadable (then named in `problems`)."""
        if self._config is None:
            path, self._config = self.path / RESOLVED_CONFIG, {}
            try:
                self._config = to_plain(tree := read_yaml_file(path), str(path), tree) if path.is_file() else {}
            except ConfigError as exc:
                self.config_problems = [str(problem) for problem in exc.problems]
        return self._config

    def runtime(self) -> float | None:
        """Training seconds: the pipeline's own count, else TRL's, else wall time from run_info."""
        seconds = self.summary.train_seconds or self.final("train_runtime")
        if seconds is None and self.info.started and self.info.ended:
            return (_when(self.info.ended) - _when(self.info.started)).total_seconds()
        return seconds

    def eval_accuracy(self) -> tuple[float | None, float | None]:
        ev = self.summary.eval or {}
        return ev.get("accuracy_before"), ev.get("accuracy_after")

    # Read once: compare and plot ask for both many times.
    _metrics: list[dict] | None = field(default=None, repr=False, compare=False)
    metric_problems: list[str] = field(default_factory=list, repr=False, compare=False)
    _config: dict | None = field(default=None, repr=False, compare=False)
    config_problems: list[str] = field(default_factory=list, repr=False, compare=False)


def is_run_dir(path: Path) -> bool:
    return (path / RUN_INFO).is_file() or (path / RESOLVED_CONFIG).is_file()


def load_run(path) -> Run:
    path = Path(path)
    if not path.is_dir() or not is_run_dir(path):
        message = "is not a run directory (no run_info.json or resolved_config.yaml)."
        raise ConfigError.of("", message, "pass a folder created by a training run", str(path))
    recorded = read_json(path / SUMMARY)
    run = Run(path, RunInfo.load(path))
    # Still running, or died before writing its end: the same summary, from metrics.jsonl.
    run.summary = Summary.from_dict(recorded) if recorded else metrics.summarize(run.metrics())
    run.metrics()  # read once here: a record of the wrong type makes the run unreadable
    return run


def find_runs(dirs) -> list[Run]:
    """Runs in the given folders (each a run directory or a folder of them), oldest first."""
    runs = []
    for d in map(Path, dirs):
        if not d.is_dir():
            fix = "pass an output_dir (e.g. ./grpo_results_local) or a run directory"
            raise ConfigError.of("", "no such folder.", fix, str(d))
        runs += [load_run(d)] if is_run_dir(d) else [load_run(p) for p in sorted(d.iterdir()) if is_run_dir(p)]
    return sorted(runs, key=lambda r: (r.info.started or "", r.name))


def default_dirs(where=".") -> list[Path]:
    """Every `grpo_results*` folder in `where`, by name."""
    return sorted(p for p in Path(where).glob(Path(DEFAULT_DIRS).name) if p.is_dir())


def effective_status(info: RunInfo) -> str:
    """The recorded status, but a "running" run whose process is gone is not (another machine's: as recorded)."""
    status, pid = info.status or "unknown", info.pid
    if status != "running" or not isinstance(pid, int) or info.hostname != socket.gethostname():
        return status
    return "running" if _alive(pid, info.started) else GONE


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    # A pid is reused after its process ends: a process that started after the run did is another one.
    try:  # its start time (epoch seconds), from /proc on Linux
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        stat = Path("/proc/stat").read_text().splitlines()
        began = next(float(line.split()[1]) for line in stat if line.startswith("btime"))
        began += int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return True  # elsewhere: taken at its word
    return started is None or began <= _when(started).timestamp() + 5


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return datetime.now().astimezone()


def commit_of(info: RunInfo) -> str:
    return info.commit[:8] + ("+dirty" if info.dirty else "") if info.commit else "-"


def list_table(runs: list[Run]) -> list[list[str]]:
    rows = [["NAME", "STARTED", "CONFIG", "STATUS", "STEPS", "BEST REWARD", "COMMIT"]]
    for run in runs:
        started = (run.info.started or "-").replace("T", " ")[:19]
        config, best = run.info.config_file or "(preset)", fmt(run.best("reward"))
        rows.append([run.name, started, config, run.status_shown, str(run.steps), best, commit_of(run.info)])
    return rows
