"""Each rank's output in RUN_DIR/logs/rankN.log (rank 0's copied by launch/execute.py from the console);
other ranks write to it by file descriptor, so C-level output and a dying rank's traceback land there."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def rank_log(run_dir: Path | str, rank: int) -> Path:
    return Path(run_dir) / "logs" / f"rank{rank}.log"


def send_output_to_log(run_dir: Path | str, rank: int) -> Path:
    """Point stdout and stderr at logs/rankN.log (appending: a resumed run's attempts stay in it)."""
    path = rank_log(run_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for number, stream in ((1, sys.stdout), (2, sys.stderr)):
        stream.flush()
        os.dup2(fd, number)
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)  # a rank killed mid-step still leaves its last lines
    os.close(fd)
    return path
