"""metrics.jsonl: one JSON object per logged step. A run killed mid-write leaves a torn last line: every
reader skips it and `truncate_after` (--resume) drops it, so it never stops a command."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .record import Summary, described, fits, number_or, write_text

METRICS = "metrics.jsonl"
COMPLETIONS = "completions.jsonl"
NOT_METRICS = ("step", "epoch", "time")  # bookkeeping keys in every record
# Metrics that are better when lower; every other number is better when higher (reward, accuracy).
LOWER_IS_BETTER = ("loss", "kl", "clip_ratio", "runtime")
# The bookkeeping fields every reader relies on, typed for record.fits (a metric's value may be anything).
TYPED = {"step": "int", "epoch": "float | None", "time": "float | None"}


def lower_is_better(key: str) -> bool:
    """Whether a smaller value of `key` is the better one (summaries, compare's order, sweeps)."""
    return any(word in key for word in LOWER_IS_BETTER)


def path_of(run_dir: Path | str) -> Path:
    return Path(run_dir) / METRICS


def append(run_dir: Path | str, record: dict) -> None:
    """Add one record as one line; a whole line per write, so readers see complete records."""
    with path_of(run_dir).open("a") as handle:
        handle.write(json.dumps(record, default=float) + "\n")


def _lines(path: Path | str):
    """(number, line, its JSON object or None when torn) of each non-blank line of a .jsonl file."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            yield number, line, record if isinstance(record, dict) else None


def read_counted(path: Path | str) -> tuple[list[dict], int]:
    """The JSON objects of a .jsonl file and how many non-blank lines were not one ([], 0 if absent)."""
    records = [record for _, _, record in _lines(path)]
    return [r for r in records if r is not None], records.count(None)


def read(run_dir: Path | str) -> list[dict]:
    """Every record of a run's metrics.jsonl, in order, skipping those read_checked rejects."""
    return read_checked(run_dir)[0]


def record_problem(record: dict) -> str | None:
    """What is wrong with one metrics record's bookkeeping fields, or None."""
    for key, annotation in TYPED.items():
        value = record.get(key)
        if key == "step" and isinstance(value, float) and value.is_integer():
            continue  # 3.0 is step 3
        if (key in record or key == "step") and not fits(value, annotation):
            return f"`{key}` should be {described(annotation)}, got {value!r:.60}"
    return None


def read_checked(run_dir: Path | str) -> tuple[list[dict], list[str]]:
    """The records with well-typed bookkeeping fields, and "metrics.jsonl line N: ..." for each other."""
    records, problems = [], []
    for number, _, record in _lines(path_of(run_dir)):
        if record is None:
            continue  # torn (a write cut short): counted by read_counted, never an error
        if why := record_problem(record):
            problems.append(f"{METRICS} line {number}: {why}")
        else:
            records.append(record)
    return records, problems


def read_completions(run_dir: Path | str, step: int | None = None) -> list[dict]:
    """Sampled completions (completions.jsonl), all of them or those of one step."""
    records = read_counted(Path(run_dir) / COMPLETIONS)[0]
    return records if step is None else [r for r in records if r.get("step") == step]


@dataclass(frozen=True)
class Truncation:
    """What `truncate_after` did to metrics.jsonl."""

    kept: int
    after_step: int  # records logged after the checkpoint, dropped because those steps run again
    torn: int  # lines that were not JSON (a write cut short by a hard kill)

    @property
    def dropped(self) -> int:
        return self.after_step + self.torn

    def note(self) -> str | None:
        """One line for the user when a torn line was dropped (the rest is the normal resume)."""
        if not self.torn:
            return None
        return (
            f"metrics.jsonl: dropped {self.torn} torn {'line' if self.torn == 1 else 'lines'} (a write cut short "
            f"when the run was killed); kept {self.kept} records up to the checkpoint"
        )


def truncate_after(run_dir: Path | str, step: int) -> Truncation:
    """Keep only the records up to `step` (the checkpoint a run resumes from), dropping torn lines."""
    if not (path := path_of(run_dir)).exists():
        return Truncation(0, 0, 0)
    rows = [(line, record) for _, line, record in _lines(path)]
    kept = [line for line, record in rows if record is not None and number_or(record.get("step"), 0) <= step]
    torn = sum(record is None for _, record in rows)
    write_text(path, "".join(line + "\n" for line in kept))
    return Truncation(len(kept), len(rows) - len(kept) - torn, torn)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def is_finite(value) -> bool:
    """A number that is neither NaN nor infinite (JSON's true is not a number)."""
    return is_number(value) and math.isfinite(value)


def summarize(records: list[dict]) -> Summary:
    """Final and best value of each logged metric (best by `lower_is_better`), and the last step."""
    final, best = {}, {}
    for key, value in ((k, v) for rec in records for k, v in rec.items() if k not in NOT_METRICS and is_number(v)):
        final[key] = value
        if key not in best or (value < best[key] if lower_is_better(key) else value > best[key]):
            best[key] = value
    steps = max((number_or(r.get("step"), 0) for r in records), default=0)
    return Summary(final=final, best=best, steps=int(steps) if float(steps).is_integer() else steps)


def series(records: list[dict], metric: str) -> list[tuple[float, float]]:
    """(step, value) of every record that logged `metric` as a finite number, in logged order."""
    return [(r["step"], r[metric]) for r in records if "step" in r and is_finite(r.get(metric))]
