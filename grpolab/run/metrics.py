"""metrics.jsonl: one JSON object per logged step, appended as training goes.

A run killed mid-write (SIGKILL, a node lost) leaves a torn last line. Every reader goes through
`read`, which skips such a line, and `truncate_after` (used on --resume) drops it, so a torn
line never stops a command."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .record import Summary, write_text

METRICS = "metrics.jsonl"
COMPLETIONS = "completions.jsonl"
NOT_METRICS = ("step", "epoch", "time")  # bookkeeping keys in every record
# Metrics that are better when lower; every other number is better when higher (reward, accuracy).
LOWER_IS_BETTER = ("loss", "kl", "clip_ratio", "runtime")


def lower_is_better(key: str) -> bool:
    """Whether a smaller value of `key` is the better one (summaries, compare's order, sweeps)."""
    return any(word in key for word in LOWER_IS_BETTER)


def path_of(run_dir: Path | str) -> Path:
    return Path(run_dir) / METRICS


def append(run_dir: Path | str, record: dict) -> None:
    """Add one record as one line; a whole line per write, so readers see complete records."""
    with path_of(run_dir).open("a") as handle:
        handle.write(json.dumps(record, default=float) + "\n")


def _parse(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _lines(path: Path | str):
    """(line number, line, its JSON object or None when torn) of each non-blank line of a .jsonl
    file; nothing when the file is absent."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield number, line, _parse(line)


def read_counted(path: Path | str) -> tuple[list[dict], int]:
    """The JSON objects of a .jsonl file and how many non-blank lines were not one (torn or not
    objects); ([], 0) when the file is absent."""
    records = [record for _, _, record in _lines(path)]
    return [r for r in records if r is not None], records.count(None)


def read_jsonl(path: Path | str) -> list[dict]:
    """The JSON objects of a .jsonl file, skipping blank, torn or non-object lines ([] if absent)."""
    return read_counted(path)[0]


def read(run_dir: Path | str) -> list[dict]:
    """Every record of a run's metrics.jsonl, in order; a torn line, or a record whose step,
    epoch or time has the wrong type, is skipped (read_checked names those)."""
    return read_checked(run_dir)[0]


# The bookkeeping fields every reader relies on, and their types (record.fits); a metric's value
# may be anything (readers take the numbers: is_number).
TYPED = {"step": "int", "epoch": "float | None", "time": "float | None"}


def record_problem(record: dict) -> str | None:
    """What is wrong with one metrics record's bookkeeping fields, or None."""
    from .record import described, fits

    for key, annotation in TYPED.items():
        value = record.get(key)
        if key == "step" and isinstance(value, float) and value.is_integer():
            continue  # 3.0 is step 3
        if (key in record or key == "step") and not fits(value, annotation):
            return f"`{key}` should be {described(annotation)}, got {value!r:.60}"
    return None


def read_checked(run_dir: Path | str) -> tuple[list[dict], list[str]]:
    """The records of metrics.jsonl whose bookkeeping fields have the right types, and one line
    naming the line and field of each record that does not ("metrics.jsonl line 3: `step` ...")."""
    records, problems = [], []
    for number, _, record in _lines(path_of(run_dir)):
        if record is None:
            continue  # torn (a write cut short): counted by read_counted, never an error
        why = record_problem(record)
        if why is None:
            records.append(record)
        else:
            problems.append(f"{METRICS} line {number}: {why}")
    return records, problems


def read_completions(run_dir: Path | str, step: int | None = None) -> list[dict]:
    """Sampled completions (completions.jsonl: step, prompt, completion, rewards, advantage, length,
    truncated), all of them or those of one step; lines that are torn or not objects are skipped."""
    records = read_jsonl(Path(run_dir) / COMPLETIONS)
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
        lines = "line" if self.torn == 1 else "lines"
        return (
            f"metrics.jsonl: dropped {self.torn} torn {lines} (a write cut short when the run was killed); "
            f"kept {self.kept} records up to the checkpoint"
        )


def truncate_after(run_dir: Path | str, step: int) -> Truncation:
    """Keep only the records up to `step` (the checkpoint a run resumes from), dropping torn lines.
    The file is replaced atomically; a missing file is left missing."""
    path = path_of(run_dir)
    if not path.exists():
        return Truncation(0, 0, 0)
    rows = [(line, record) for _, line, record in _lines(path)]
    kept = [line for line, record in rows if record is not None and _step(record) <= step]
    torn = sum(record is None for _, record in rows)
    write_text(path, "".join(line + "\n" for line in kept))
    return Truncation(len(kept), len(rows) - len(kept) - torn, torn)


def _step(record: dict) -> float:
    value = record.get("step", 0)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def summarize(records: list[dict]) -> Summary:
    """Final and best value of each logged metric (best by `lower_is_better`), and the last step."""
    final, best = {}, {}
    for rec in records:
        for key, value in rec.items():
            if key in NOT_METRICS or not is_number(value):
                continue
            final[key] = value
            if key not in best or (value < best[key] if lower_is_better(key) else value > best[key]):
                best[key] = value
    steps = max((_step(r) for r in records), default=0)
    return Summary(final=final, best=best, steps=int(steps) if float(steps).is_integer() else steps)


def series(records: list[dict], metric: str) -> list[tuple[float, float]]:
    """(step, value) of every record that logged `metric` as a finite number, in logged order (the
    one reader of a metric's curve: compare, sweeps and the doctor)."""
    return [
        (r["step"], r[metric])
        for r in records
        if "step" in r and is_number(r.get(metric)) and math.isfinite(r[metric])
    ]
