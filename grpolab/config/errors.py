"""Config errors: every problem names where it came from, the key, what is wrong, and the smallest fix."""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    key: str  # dotted key, "" for the whole file
    message: str  # what is wrong and what is allowed
    fix: str | None = None  # the smallest change that makes it valid
    origin: str | None = None  # "configs/x.yaml:12", "--set", "update_param", "preset configs/grpo_local.yaml:3"

    def __str__(self) -> str:
        where = f"{self.origin}: " if self.origin else ""
        key = f"{self.key}: " if self.key else ""
        fix = f" Fix: {clipped(self.fix, MAX_SHOWN)}" if self.fix else ""
        message = self.message if self.message.endswith((".", "?", "!")) else self.message + "."
        return f"{where}{key}{clipped(message, MAX_SHOWN)}{fix}"


# A message echoes what the user wrote; a value of megabytes (a pasted file, an alias expanded
# a hundred times) would make one error line of megabytes. Its head and tail say enough.
MAX_SHOWN = 4000


def shown(value, limit: int = 80) -> str:
    """A value as an error line shows it: repr, its head and tail only when long. A whole number
    past Python's 4300-digit text limit is described, not converted."""
    try:
        return clipped(repr(value), limit)
    except ValueError:
        return f"a whole number of about {int(value.bit_length() * 0.30103) + 1:,} digits"


def clipped(text: str, limit: int = 80) -> str:
    """`text`, or its head and tail and its length when longer than `limit`."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit - limit // 4], text[-(limit // 8) :]
    return f"{head} ... ({len(text) - len(head) - len(tail):,} characters not shown) ... {tail}"


# What kind of problem a ConfigError is: its message starts with it, so "invalid config" is only
# ever said of a config. Every kind exits 2 (bad input, nothing started).
INVALID_CONFIG = "invalid config"
FILE_EXISTS = "file exists"
CANNOT_WRITE = "cannot write"
BAD_ARGUMENTS = "bad arguments"
CONFIG_CHANGED = "config changed"
MODEL_NOT_LOADED = "model not loaded"
NO_CHECKPOINT = "cannot resume"
INCOMPATIBLE = "incompatible trl/transformers"


SHOWN = 50  # problems printed in full; `problems` keeps every one


class ConfigError(ValueError):
    """One or more problems with the user's input, reported together. `kind` says what kind
    (INVALID_CONFIG unless given): the message starts with it."""

    def __init__(self, problems: list[Problem] | Problem | str, kind: str = INVALID_CONFIG):
        if isinstance(problems, str):
            problems = Problem("", problems)
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        self.kind = kind
        super().__init__(self.render())

    @classmethod
    def of(cls, key: str, message: str, fix: str | None = None, origin: str | None = None, kind: str = INVALID_CONFIG):
        """The common case, one problem: `raise ConfigError.of("data.dataset", "...", "set ...")`."""
        return cls(Problem(key, message, fix, origin), kind)

    def render(self) -> str:
        if len(self.problems) == 1:
            return f"{self.kind}: {self.problems[0]}"
        lines = [f"{self.kind} ({len(self.problems)} problems):"]
        lines += [f"  - {p}" for p in self.problems[:SHOWN]]
        if len(self.problems) > SHOWN:  # thousands of lines help nobody: the first ones show the kind
            lines.append(f"  ... and {len(self.problems) - SHOWN} more (fix these and validate again)")
        return "\n".join(lines)


def did_you_mean(word: str, candidates) -> str:
    """' Did you mean `x`?' or '' (difflib, the OmegaConf-main style)."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean `{matches[0]}`?" if matches else ""


# Who reads the advice: "python" (the library API) or "cli" (inside a grpolab command), so an
# error raised in shared code names `--force` on the command line and `overwrite=True` in Python.
# A context variable, set for the length of one command: a library call made after (or beside,
# in another thread) a command still gets Python's wording.
_AUDIENCE: ContextVar[str] = ContextVar("grpolab_audience", default="python")


@contextmanager
def cli_audience():
    """Inside this block, errors give command-line advice."""
    token = _AUDIENCE.set("cli")
    try:
        yield
    finally:
        _AUDIENCE.reset(token)


def advise(*, cli: str, python: str) -> str:
    """The advice for whoever called: the CLI wording in a command, else the Python wording."""
    return cli if _AUDIENCE.get() == "cli" else python
