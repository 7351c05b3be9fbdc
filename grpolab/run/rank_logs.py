"""Each rank's output, kept under RUN_DIR/logs/rankN.log; the console shows rank 0 only.

Ranks other than 0 write straight to their file (the file descriptors themselves, so C-level
output such as gloo's and a dying rank's traceback land there too): the plan, warnings and
progress print once. Rank 0's output goes to the console as before, and the launcher copies it
into logs/rank0.log as it passes (see launch/execute.py). When a rank fails, the launcher names
the first one to fail and its log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def rank_log(run_dir: Path | str, rank: int) -> Path:
    return Path(run_dir) / "logs" / f"rank{rank}.log"


def send_output_to_log(run_dir: Path | str, rank: int) -> Path:
    """Point this process's stdout and stderr at logs/rankN.log (appending: a resumed run's
    earlier attempts stay in it)."""
    path = rank_log(run_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)  # a rank killed mid-step still leaves its last lines
    return path
