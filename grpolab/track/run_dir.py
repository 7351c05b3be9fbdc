"""Re-exports of grpolab/run/ under the names the training pipeline and launcher import today.
The run record lives in grpolab/run/ (run_dir.py, record.py, metrics.py, provenance.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from grpolab.run import metrics as _metrics
from grpolab.run.provenance import PACKAGES, git_info, host_info, package_versions
from grpolab.run.record import now, write_json
from grpolab.run.run_dir import config_sha256, create_run_dir, write_config_files

__all__ = [
    "PACKAGES",
    "config_sha256",
    "create_run_dir",
    "drop_metrics_after",
    "git_info",
    "host_info",
    "now",
    "package_versions",
    "read_metrics",
    "summarize",
    "write_config_files",
    "write_json",
]

read_metrics = _metrics.read


def summarize(records: list[dict]) -> dict:
    """metrics.summarize as the dict the pipeline extends and writes as summary.json."""
    return _metrics.summarize(records).to_dict()


def drop_metrics_after(run_dir: Path, step: int) -> None:
    """metrics.truncate_after, saying once on stderr when a torn line was dropped."""
    note = _metrics.truncate_after(run_dir, step).note()
    if note:
        print(f"note: {note}", file=sys.stderr)
