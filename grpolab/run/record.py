"""run_info.json (RunInfo) and summary.json (Summary). Reading is tolerant (unknown keys are kept in `extra`
and written back, so an older or newer grpolab can share a folder); writing is atomic."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

RUN_INFO = "run_info.json"
SUMMARY = "summary.json"


def now() -> str:
    """The time a record stores: local time with its offset, to the second."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_text(path: Path, text: str) -> None:
    """Write atomically; a write cut short (a full disk) leaves the old file and no .tmp beside it."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict:
    """A JSON object from `path`; {} when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def number_or(value, default: float) -> float:
    """`value` when it is a number (JSON's true is not one), else `default`."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else default


# Annotation words for numbers that cannot be negative (step counts, epochs): `fits` checks the sign.
count, amount = int, float
_NOT_STORED = ("extra", "unreadable")  # fields of a record object that are not keys of its file
# The Python type each annotation word stands for (annotations are strings: `from __future__`).
_TYPES = {"str": str, "int": int, "float": (int, float), "dict": dict, "list": list, "bool": bool, "None": type(None)}
_TYPES |= {"count": int, "amount": (int, float)}  # an int, a number, that is not negative (steps, epochs)


def _split(text: str, sep: str) -> list[str]:
    """`text` split at `sep` outside brackets: `dict[str, int] | None` -> [`dict[str, int]`, `None`]."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]


def fits(value, annotation: str) -> bool:
    """Whether a JSON value has the annotated type (`list[str] | None` ...); JSON's `true` is no number."""
    for option in _split(annotation, "|"):
        name, _, inner = option.partition("[")
        inner = inner[:-1] if inner.endswith("]") else inner
        kind = _TYPES.get(name)
        if kind is None or not isinstance(value, kind):
            continue
        if isinstance(value, bool) and name in ("int", "float", "count", "amount"):
            continue
        if name in ("count", "amount") and value < 0:
            continue
        if name == "list" and inner and not all(fits(item, inner) for item in value):
            continue
        if name == "dict" and inner and not all(fits(item, _split(inner, ",")[1]) for item in value.values()):
            continue
        return True
    return False


_WORDS = {"str": "a string", "int": "a whole number", "float": "a number", "dict": "a JSON object", "None": "null"}
_WORDS |= {"list[str]": "a list of strings", "bool": "true or false", "dict[str, float | None]": "numbers by name"}
_WORDS |= {"count": "a whole number >= 0", "amount": "a number >= 0", "list[dict]": "a list of JSON objects"}
_WORDS["dict[str, dict[str, dict] | list[dict[str, dict]]]"] = "callback states ({name: {args: {}, attributes: {}}})"


def described(annotation: str) -> str:
    return " or ".join(_WORDS.get(part, part) for part in _split(annotation, "|"))


@dataclass
class _Record:
    """from_dict / to_dict / load / save shared by RunInfo and Summary."""

    FILE: ClassVar[str]
    # The keys grpolab reads inside a JSON-object field, typed like fields: {"git": {"commit": "str | None"}}.
    NESTED: ClassVar[dict[str, dict[str, str]]] = {}
    # Written as null once the run has ended, even when unset: "no error" is an answer then.
    KEPT_WHEN_ENDED: ClassVar[tuple[str, ...]] = ()
    extra: dict = field(default_factory=dict)  # keys this grpolab does not know, written back unchanged
    unreadable: list = field(default_factory=list)  # "FILE: `field` should be ..., got ..." (see from_dict)

    @classmethod
    def from_dict(cls, data: dict | None):
        """The record from parsed JSON; a field of the wrong type reads as absent and is named in
        `unreadable`, so commands say which field of which file is wrong instead of failing later."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls) if f.name not in _NOT_STORED}
        values = {k: data.pop(k) for k in list(data) if k in known}
        unreadable = []
        for f in dataclasses.fields(cls):
            if f.name in values and not fits(values[f.name], f.type):
                unreadable.append(f"{cls.FILE}: `{f.name}` should be {described(f.type)}, got {values[f.name]!r:.60}")
                values[f.name] = f.default_factory() if f.default is dataclasses.MISSING else f.default
        for name, keys in cls.NESTED.items():
            inner = values.get(name)
            for key, annotation in keys.items() if isinstance(inner, dict) else ():
                if key in inner and not fits(inner[key], annotation):
                    unreadable.append(
                        f"{cls.FILE}: `{name}.{key}` should be {described(annotation)}, got {inner[key]!r:.60}"
                    )
                    values[name] = inner = {k: v for k, v in inner.items() if k != key}  # read as absent
        return cls(**values, extra=data, unreadable=unreadable)

    def to_dict(self) -> dict:
        kept = self.KEPT_WHEN_ENDED if getattr(self, "ended", None) is not None else ()
        out = {name: value for name, value in self._stored() if value is not None or name in kept}
        return out | {key: value for key, value in self.extra.items() if key not in out}

    def _stored(self):
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in _NOT_STORED]

    @classmethod
    def load(cls, run_dir: Path | str):
        """The record in `run_dir` (empty when the file is missing or unreadable)."""
        return cls.from_dict(read_json(Path(run_dir) / cls.FILE))

    def save(self, run_dir: Path | str) -> Path:
        write_text(path := Path(run_dir) / self.FILE, json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path

    def update(self, **values) -> None:
        """Set fields by name; a name that is not a field goes to `extra` (and into the file)."""
        names = {name for name, _ in self._stored()}
        for key, value in values.items():
            if key in names:
                setattr(self, key, value)
            else:
                self.extra[key] = value


@dataclass
class RunInfo(_Record):
    """run_info.json: where a run came from and what became of it."""

    FILE: ClassVar[str] = RUN_INFO
    KEPT_WHEN_ENDED: ClassVar[tuple[str, ...]] = ("error",)
    NESTED: ClassVar[dict[str, dict[str, str]]] = {
        "git": {"commit": "str | None", "dirty": "bool | None"},
        "host": {"hostname": "str | None"},
        "guard": {"stopped": "dict | None"},
        "dataset": {"rows": "count | None"},
    }

    run_name: str | None = None
    command: list[str] | None = None
    config_file: str | None = None  # as given on the command line; relative to `cwd`
    mode: str | None = None
    model: str | None = None
    git: dict | None = None  # commit, dirty, repo, config_diff
    packages: dict | None = None  # name -> version (None: not installed)
    host: dict | None = None  # hostname, platform, python, cpu_count, gpus
    world_size: count | None = None
    device: str | None = None
    threads_per_process: count | None = None
    effective_batch_size: count | None = None
    derived: dict | None = None
    dataset: dict | None = None
    config_sha256: str | None = None
    origins: dict | None = None  # dotted key -> where its value came from ("configs/x.yaml:12", "--set")
    status: str | None = None  # running | finished | stopped (the guard) | interrupted | failed
    pid: count | None = None  # tells a crashed run (pid gone) from a live one
    cwd: str | None = None
    started: str | None = None
    resumed: list[str] | None = None
    trl_args: dict | None = None
    ended: str | None = None
    exit_code: int | None = None
    global_step: count | None = None
    error: str | None = None
    failed_rank: count | None = None  # in a launch: the rank that failed first, whose error `error` is
    guard: dict | None = None  # the live guard's findings, and the one that stopped the run (grpolab.guard)
    forecast: dict | None = None  # the run's time projected after its first steps, and the actual time

    @property
    def guard_stop(self) -> dict | None:
        """The finding that stopped the run (kind, step, title, evidence, set ...), or None."""
        stopped = (self.guard or {}).get("stopped")
        return stopped if isinstance(stopped, dict) else None

    hostname = property(lambda self: (self.host or {}).get("hostname"))
    commit = property(lambda self: (self.git or {}).get("commit"))
    dirty = property(lambda self: (self.git or {}).get("dirty"))


@dataclass
class Summary(_Record):
    """summary.json: final and best value of every logged metric, and how the run ended."""

    FILE: ClassVar[str] = SUMMARY
    NESTED: ClassVar[dict[str, dict[str, str]]] = {
        "eval": {"accuracy_before": "float | None", "accuracy_after": "float | None"},
        "guard": {"stopped": "dict | None"},
    }

    final: dict[str, float | None] = field(default_factory=dict)  # metric -> last logged value
    best: dict[str, float | None] = field(default_factory=dict)  # metric -> best (see metrics.lower_is_better)
    steps: count | None = None  # the highest step in metrics.jsonl
    status: str | None = None
    train_seconds: float | None = None
    global_step: count | None = None
    eval: dict | None = None  # held-out scores: accuracy_before, accuracy_after, ...
    guard: dict | None = None  # as in run_info.json
    forecast: dict | None = None  # as in run_info.json

    @property
    def step_count(self) -> int:
        return self.global_step or self.steps or 0


@dataclass
class TrainerState(_Record):
    """checkpoint-N/trainer_state.json: every key transformers' Trainer has, typed as resuming needs it
    (null only where allowed); a key it does not have would stop it too (see `extra`)."""

    FILE: ClassVar[str] = "trainer_state.json"

    global_step: count = None  # an absent key reads as None; a null one is unreadable
    max_steps: count = None  # the step the run was to stop at
    num_train_epochs: amount = None
    epoch: amount = None
    log_history: list[dict] = None
    logging_steps: amount = None
    eval_steps: amount = None
    save_steps: amount = None
    train_batch_size: count | None = None
    num_input_tokens_seen: count = None
    total_flos: amount = None
    best_metric: float | None = None
    best_global_step: count | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = None
    is_world_process_zero: bool = None
    is_hyper_param_search: bool = None
    trial_name: str | None = None
    trial_params: dict | None = None
    stateful_callbacks: dict[str, dict[str, dict] | list[dict[str, dict]]] | None = None  # name -> args, attributes
