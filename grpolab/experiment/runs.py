"""Reading run directories: run_info.json, summary.json, metrics.jsonl, resolved_config.yaml.

A run that is still going (or that died without writing its end) has no summary.json, so
its summary is computed from metrics.jsonl with the same rule the pipeline uses."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from grpolab.config import ConfigError, Problem
from grpolab.config.yaml_io import parse_yaml_text, to_plain
from grpolab.track.run_dir import summarize

DEFAULT_DIRS = ("./grpo_results_local", "./grpo_results_cluster")
STATUSES = ("running", "finished", "interrupted", "failed")
GONE = "interrupted*"  # recorded as running, but its process no longer exists


@dataclass
class Run:
    path: Path
    info: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.get("run_name") or self.path.name

    @property
    def status(self) -> str:
        return effective_status(self.info)

    @property
    def steps(self) -> int:
        return self.info.get("global_step") or self.summary.get("global_step") or self.summary.get("steps") or 0

    def final(self, metric: str):
        return self.summary.get("final", {}).get(metric)

    def best(self, metric: str):
        return self.summary.get("best", {}).get(metric)

    def metrics(self) -> list[dict]:
        return read_metrics(self.path)

    def config(self) -> dict:
        path = self.path / "resolved_config.yaml"
        if not path.is_file():
            return {}
        return to_plain(parse_yaml_text(path.read_text(), str(path)), str(path))

    def runtime(self) -> float | None:
        """Training seconds: the pipeline's own count, else TRL's, else wall time from run_info."""
        seconds = self.summary.get("train_seconds") or self.final("train_runtime")
        if seconds is None and self.info.get("started") and self.info.get("ended"):
            seconds = (_when(self.info["ended"]) - _when(self.info["started"])).total_seconds()
        return seconds

    def eval_accuracy(self) -> tuple[float | None, float | None]:
        ev = self.summary.get("eval") or {}
        return ev.get("accuracy_before"), ev.get("accuracy_after")


def is_run_dir(path: Path) -> bool:
    return (path / "run_info.json").is_file() or (path / "resolved_config.yaml").is_file()


def load_run(path) -> Run:
    path = Path(path)
    if not path.is_dir() or not is_run_dir(path):
        raise ConfigError(
            Problem(
                "",
                "is not a run directory (no run_info.json or resolved_config.yaml).",
                "pass a folder created by a training run",
                str(path),
            )
        )
    info = _read_json(path / "run_info.json")
    summary = _read_json(path / "summary.json") or summarize(read_metrics(path))
    return Run(path, info, summary)


def find_runs(dirs) -> list[Run]:
    """Runs in the given folders: each folder is a run directory or holds run directories.
    Sorted by start time, oldest first."""
    runs = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise ConfigError(
                Problem(
                    "", "no such folder.", "pass an output_dir (e.g. ./grpo_results_local) or a run directory", str(d)
                )
            )
        if is_run_dir(d):
            runs.append(load_run(d))
        else:
            runs += [load_run(p) for p in sorted(d.iterdir()) if p.is_dir() and is_run_dir(p)]
    return sorted(runs, key=lambda r: (r.info.get("started") or "", r.name))


def default_dirs() -> list[Path]:
    return [Path(d) for d in DEFAULT_DIRS if Path(d).is_dir()]


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl; a half-written last line (a run being killed mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def effective_status(info: dict) -> str:
    """The recorded status, except that a "running" run whose process is gone is not running.
    Needs `pid` and `host.hostname` in run_info; a run on another machine is taken at its word."""
    status = info.get("status") or "unknown"
    pid = info.get("pid")
    host = (info.get("host") or {}).get("hostname")
    if status != "running" or not isinstance(pid, int) or host != socket.gethostname():
        return status
    return "running" if _alive(pid, info.get("started")) else GONE


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    # A pid is reused after its process ends: a process that started after the run did is another one.
    began = _process_start(pid)
    return began is None or started is None or began <= _when(started).timestamp() + 5


def _process_start(pid: int) -> float | None:
    """Start time (epoch seconds) of a process, from /proc on Linux; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return datetime.fromtimestamp(time.time()).astimezone()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# ------------------------------------------------------------------------- `runs list`
def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def commit_of(info: dict) -> str:
    git = info.get("git") or {}
    commit = git.get("commit")
    if not commit:
        return "-"
    return commit[:8] + ("+dirty" if git.get("dirty") else "")


def list_table(runs: list[Run]) -> list[list[str]]:
    rows = [["NAME", "STARTED", "CONFIG", "STATUS", "STEPS", "BEST REWARD", "COMMIT"]]
    for run in runs:
        started = run.info.get("started", "-").replace("T", " ")[:19]
        rows.append(
            [
                run.name,
                started,
                run.info.get("config_file") or "(preset)",
                run.status,
                str(run.steps),
                fmt(run.best("reward")),
                commit_of(run.info),
            ]
        )
    return rows


def render_rows(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
