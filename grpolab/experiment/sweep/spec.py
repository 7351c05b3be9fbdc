"""The sweep file (SWEEP.yaml): a pydantic `SweepSpec`, read into a `Sweep`.

The file's shape (keys, types, allowed values, the rules between keys) is the pydantic model;
each validation error becomes a `Problem` at the file and line of its key, like a config's.
Every value a trial would set is then checked by the config loader itself, pointed at the
sweep file's line. The format is documented in configs/sweeps/example_sweep.yaml.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml.comments import CommentedMap

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.errors import did_you_mean
from grpolab.config.yaml_io import inline_yaml, read_yaml_file, to_plain
from grpolab.run.metrics import lower_is_better

STRATEGIES = ("grid", "random", "optuna")
RANGE_KEYS = ("low", "high", "log")
SEED_KEY = "training.seed"  # what `seeds:` varies
EXAMPLE = "see configs/sweeps/example_sweep.yaml"


def _problem(message: str, fix: str | None = None, key: str | None = None) -> PydanticCustomError:
    """A validation error that carries our own message, fix and (for rules between keys) key."""
    return PydanticCustomError("sweep", "{message}", {"message": message, "fix": fix, "key": key})


class Range(BaseModel):
    """`{low, high, log}`: random and optuna draw from it (log-uniform with log: true)."""

    model_config = ConfigDict(extra="forbid")
    low: Any = None
    high: Any = None
    log: Any = False

    @model_validator(mode="after")
    def _numbers(self):
        low, high, log = self.low, self.high, self.log
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not numbers or not low < high or not isinstance(log, bool) or (log and low <= 0):
            raise _problem(
                "a range needs numbers low < high (and low > 0 with log: true), "
                f"got {inline_yaml(self.model_dump(exclude_unset=True))}."
            )
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


def _kind(value) -> str | None:
    if isinstance(value, list):
        return "values"
    if isinstance(value, dict):
        return "range"
    return None


Parameter = Annotated[
    Annotated[list[Any], Tag("values")] | Annotated[Range, Tag("range")],
    Discriminator(
        _kind,
        custom_error_type="parameter_kind",
        custom_error_message="must be a list of values or a range {low, high}",
    ),
]


class SweepSpec(BaseModel):
    """What a sweep file may say. Field order is the order problems are checked in."""

    model_config = ConfigDict(extra="forbid")

    name: Any = None  # WandB group of every trial and part of file names; default: the file's name
    base: Any  # the config file every trial starts from
    strategy: Literal["grid", "random", "optuna"] = "grid"
    trials: Any = None  # random / optuna: how many trials
    seed: Any = 0  # random / optuna: the sampler's seed
    seeds: list[Any] | None = None  # training seeds: every trial runs once per seed
    metric: str = "reward"  # a metrics.jsonl key: sorts the table, optuna's objective
    direction: Literal["maximize", "minimize"] | None = None
    pruner: Literal["median", "none"] = "median"  # optuna: stop trials worse than the median at the same step
    parameters: dict[str, Parameter]
    fixed: dict[str, Any] = Field(default_factory=dict, alias="set")
    config_dir: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name):
        if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name)):
            raise _problem(
                f"{name!r} is not a usable name (letters, digits, _ . - only): it becomes the "
                "WandB group and part of file names."
            )
        return name

    @field_validator("base")
    @classmethod
    def _base(cls, base):
        if not isinstance(base, str) or not Path(base).is_file():
            raise _problem(
                f"config file `{base}` not found.",
                "give a path relative to the current directory, e.g. configs/grpo_cluster.yaml",
            )
        return base

    @field_validator("seed")
    @classmethod
    def _seed(cls, seed):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise _problem(f"must be a whole number, got {seed!r}.")
        return seed

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds):
        if seeds is None:
            return None
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise _problem(
                "must be a non-empty list of whole numbers >= 0 (training.seed of each run), "
                f"got {inline_yaml(seeds)}.",
                "e.g. `seeds: [0, 1, 2]`",
            )
        if len(set(seeds)) != len(seeds):
            raise _problem(f"lists a seed twice: {inline_yaml(seeds)}.")
        return seeds

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, params):
        if not params:
            raise _problem(_TYPE_HELP["parameters"])
        problems = []
        for key, values in params.items():
            if isinstance(values, list) and not values:
                problems.append((f"parameters.{key}", "has an empty list of values.", "give at least one value"))
            elif isinstance(values, list) and len({repr(v) for v in values}) != len(values):
                problems.append((f"parameters.{key}", f"lists a value twice: {inline_yaml(values)}.", None))
        if problems:
            raise PydanticCustomError(
                "sweep_rules", "{count} problems", {"count": len(problems), "problems": problems}
            )
        return params

    @field_validator("fixed")
    @classmethod
    def _fixed(cls, fixed):
        if "logging.group" in fixed:
            raise _problem(
                "sets logging.group, which a sweep sets to its name.", "delete it; name the sweep with `name:` instead"
            )
        return fixed

    @model_validator(mode="after")
    def _rules(self):
        problems = []

        def fail(key, message, fix=None):
            problems.append((key, message, fix))

        given = self.model_fields_set
        if self.strategy == "grid":
            for key in ("trials", "seed", "pruner"):
                if key in given:
                    fail(
                        key,
                        "does not apply to strategy grid, which runs every combination once.",
                        "delete it, or use strategy: random",
                    )
        elif isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            fail(
                "trials",
                f"strategy {self.strategy} needs `trials:` (a whole number >= 1), got {self.trials!r}.",
                "add e.g. `trials: 8`",
            )
        for key, spec in self.parameters.items():
            if isinstance(spec, Range) and self.strategy == "grid":
                low, high = inline_yaml(spec.low), inline_yaml(spec.high)
                fail(
                    f"parameters.{key}",
                    "a range needs strategy random or optuna; grid needs a list of values.",
                    f"write e.g. `{key}: [{low}, {high}]`",
                )
            elif (
                self.strategy == "optuna" and isinstance(spec, list) and any(isinstance(v, (list, dict)) for v in spec)
            ):
                fail(f"parameters.{key}", "optuna can only choose among scalar values (numbers, strings, booleans).")
        if self.seeds is not None:
            for where, keys in (("parameters", self.parameters), ("set", self.fixed)):
                if SEED_KEY in keys:
                    fail(
                        f"{where}.{SEED_KEY}" if where == "parameters" else where,
                        f"sets {SEED_KEY}, which `seeds:` sets for each run.",
                        "delete it and list the seeds in `seeds:`",
                    )
        combos = self.combinations()
        if self.strategy == "random" and not problems and combos is not None and combos < self.trials:
            fail(
                "trials",
                f"{self.trials} trials, but the parameters have only {combos} distinct combinations.",
                "use strategy: grid, or fewer trials",
            )
        if problems:
            raise PydanticCustomError(
                "sweep_rules", "{count} problems", {"count": len(problems), "problems": problems}
            )
        return self

    def combinations(self) -> int | None:
        """How many distinct parameter sets exist (None when a range makes them endless)."""
        if all(isinstance(s, list) for s in self.parameters.values()):
            return math.prod(len(s) for s in self.parameters.values())
        return None


# The message for a key whose value has the wrong type (pydantic's own says less).
_TYPE_HELP = {
    "parameters": "must be a non-empty mapping of dotted config keys to a list of values or a range {low, high}.",
    "set": "must be a mapping of dotted keys to values, e.g. `training.max_steps: 200`.",
    "metric": "must be a logged metric name such as reward or kl.",
    "seeds": "must be a list of whole numbers, e.g. `seeds: [0, 1, 2]`.",
    "config_dir": "must be a folder path.",
}


@dataclass
class Sweep:
    """A validated sweep file, with its defaults filled in."""

    path: Path
    name: str
    base: Path
    strategy: str
    parameters: dict  # dotted key -> list of values, or a Range
    fixed: dict = field(default_factory=dict)  # `set:`
    trials: int | None = None
    seed: int = 0
    metric: str = "reward"
    direction: str = "maximize"
    config_dir: Path | None = None
    seeds: list[int] | None = None
    prune: bool = False  # optuna with the median pruner


class _Locator:
    """file:line of a key in the sweep file (parameter keys contain dots: no dotted lookup)."""

    def __init__(self, path: Path, tree):
        self.path, self.tree = path, tree

    def __call__(self, *keys) -> str:
        node, line = self.tree, None
        for key in keys:
            if not isinstance(node, CommentedMap) or key not in node:
                break
            pos = (node.lc.data or {}).get(key)
            line, node = (pos[0] + 1 if pos else line), node[key]
        return f"{self.path}:{line}" if line else str(self.path)


def problems_of(exc: ValidationError, where: _Locator) -> list[Problem]:
    """pydantic's errors as Problems: our own message where a validator gave one, the key's help
    for a wrong type, and the file:line of the key."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        if loc[:1] == ["parameters"] and len(loc) > 2 and loc[2] in ("values", "range"):
            loc = loc[:2] + loc[3:]  # the union's tag is not part of the key
        kind, ctx = error["type"], error.get("ctx") or {}
        at = where(*loc[:2]) if loc else str(where.path)
        key = ".".join(loc) if loc[:1] == ["parameters"] else (loc[0] if loc else "")
        if kind == "sweep_rules":
            for rule_key, message, fix in ctx["problems"]:
                parts = rule_key.split(".", 1)
                problems.append(Problem(rule_key, message, fix, where(*parts)))
            continue
        if kind == "sweep":
            problems.append(Problem(ctx.get("key") or key, ctx["message"], ctx.get("fix"), at))
        elif kind == "extra_forbidden" and len(loc) == 1:
            known = [f.alias or name for name, f in SweepSpec.model_fields.items()]
            hint = did_you_mean(loc[0], known) or f" Allowed: {', '.join(known)}."
            problems.append(Problem(loc[0], f"unknown sweep key.{hint}", None, at))
        elif kind == "extra_forbidden":
            hint = did_you_mean(loc[-1], RANGE_KEYS)
            problems.append(Problem(key, f"unknown range key; allowed: low, high, log.{hint}", None, at))
        elif kind == "missing":
            problems.append(Problem(key, "is required.", EXAMPLE, at))
        elif kind == "literal_error" and loc[0] == "strategy":
            value = str(error["input"])
            problems.append(
                Problem(
                    "strategy",
                    f"`{value}` is not a strategy; allowed: {', '.join(STRATEGIES)}.{did_you_mean(value, STRATEGIES)}",
                    None,
                    at,
                )
            )
        elif kind == "literal_error" and loc[0] == "pruner":
            problems.append(Problem("pruner", f"`{error['input']}` must be median or none.", None, at))
        elif kind == "literal_error" and loc[0] == "direction":
            problems.append(Problem("direction", f"`{error['input']}` must be maximize or minimize.", None, at))
        elif kind == "parameter_kind":
            spec = inline_yaml(error["input"])
            name = loc[1]
            problems.append(
                Problem(
                    key,
                    f"must be a list of values or a range {{low, high}}, got {spec}.",
                    f"write `{name}: [{spec}]`",
                    at,
                )
            )
        elif loc and loc[0] in _TYPE_HELP and len(loc) <= 2:
            problems.append(Problem(loc[0], _TYPE_HELP[loc[0]], None, at))
        else:
            problems.append(Problem(key, f"{error['msg']}, got {inline_yaml(error.get('input'))}.", None, at))
    return problems


def load_sweep(path) -> Sweep:
    """Read and validate a sweep file; every parameter value is checked by the config loader."""
    path = Path(path)
    tree = read_yaml_file(path)
    data = to_plain(tree, str(path), tree)
    where = _Locator(path, tree)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_of(exc, where)) from None

    base = Path(spec.base)
    GRPOConfigLoader(config_path=base)  # the base itself must be valid (its own file:line in errors)
    check_values(base, spec.fixed, {}, where("set"))
    for key, values in spec.parameters.items():
        candidates = [values.low, values.high] if isinstance(values, Range) else values
        for value in candidates:
            check_values(base, spec.fixed, {key: value}, where("parameters", key))
    for seed in spec.seeds or []:
        check_values(base, spec.fixed, {SEED_KEY: seed}, where("seeds"))
    direction = spec.direction or ("minimize" if lower_is_better(spec.metric) else "maximize")
    return Sweep(
        path=path,
        name=spec.name or path.stem,
        base=base,
        strategy=spec.strategy,
        parameters=dict(spec.parameters),
        fixed=dict(spec.fixed),
        trials=spec.trials,
        seed=spec.seed,
        metric=spec.metric,
        direction=direction,
        config_dir=Path(spec.config_dir) if spec.config_dir else base.parent,
        seeds=spec.seeds,
        prune=spec.strategy == "optuna" and spec.pruner == "median",
    )


def check_values(base: Path, fixed: dict, params: dict, at: str) -> None:
    """The loader's own validation, with the problem pointed at the sweep file."""
    try:
        GRPOConfigLoader(config_path=base, overrides={**fixed, **params})
    except ConfigError as exc:
        raise ConfigError([Problem(p.key, p.message, p.fix, at) for p in exc.problems]) from None
