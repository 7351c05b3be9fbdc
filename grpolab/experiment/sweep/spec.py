"""The sweep file (SWEEP.yaml): its shape is the pydantic `SweepSpec` (errors translated by
config/pydantic_errors, at their key's file:line); the rules between keys come next, then every
value a trial would set is checked by the config loader itself. Read into a `Sweep`."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    ValidationError,
    model_validator,
)

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.pydantic_errors import pydantic_problems
from grpolab.config.yaml_io import inline_yaml, line_of, read_yaml_file, to_plain
from grpolab.run.metrics import lower_is_better

SEED_KEY = "training.seed"  # what `seeds:` varies


class Range(BaseModel):
    """`{low, high, log}`: random and optuna draw from it (log-uniform with log: true)."""

    model_config = ConfigDict(extra="forbid")
    low: StrictInt | StrictFloat
    high: StrictInt | StrictFloat
    log: StrictBool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError("a range needs low < high (and low > 0 with log: true)")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


def _distinct(values: list) -> list:
    if len({repr(v) for v in values}) != len(values):
        raise ValueError(f"lists a value twice: {inline_yaml(values)}")
    return values


def _kind(value) -> str | None:
    return "list[values]" if isinstance(value, list) else "range[low, high]" if isinstance(value, dict) else None


# The tags are written like pydantic's own union labels (`list[int]`), which error keys leave out.
_NOT_A_PARAMETER = "must be a list of values such as [0.1, 0.2], or a range {low, high, log}"
Parameter = Annotated[
    Annotated[Annotated[list[JsonValue], Field(min_length=1), AfterValidator(_distinct)], Tag("list[values]")]
    | Annotated[Range, Tag("range[low, high]")],
    Discriminator(_kind, custom_error_type="parameter_kind", custom_error_message=_NOT_A_PARAMETER),
]


def _usable_name(name: str) -> str:
    if not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(
            f"{name!r} is not a usable name (letters, digits, _ . - only): it becomes the WandB group and "
            "part of file names"
        )
    return name


def _existing_file(base: Path) -> Path:
    if not base.is_file():
        raise ValueError(
            f"config file `{base}` not found; give a path relative to the current directory, "
            "e.g. configs/grpo_cluster.yaml"
        )
    return base


def _no_group(fixed: dict) -> dict:
    if "logging.group" in fixed:
        raise ValueError("sets logging.group, which a sweep sets to its name; name the sweep with `name:` instead")
    return fixed


class SweepSpec(BaseModel):
    """What a sweep file may say."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, AfterValidator(_usable_name)] | None = None  # WandB group; default: the file's name
    base: Annotated[Path, AfterValidator(_existing_file)]  # the config file every trial starts from
    strategy: Literal["grid", "random", "optuna"] = "grid"
    trials: Annotated[StrictInt, Field(ge=1)] | None = None  # random / optuna: how many trials
    seed: Annotated[StrictInt, Field(ge=0, le=2**32 - 1)] = 0  # random / optuna: the sampler's seed (numpy's range)
    seeds: (  # training seeds: every trial runs once per seed
        Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1), AfterValidator(_distinct)] | None
    ) = None
    metric: str = "reward"  # a metrics.jsonl key: sorts the table, optuna's objective
    direction: Literal["maximize", "minimize"] | None = None
    pruner: Literal["median", "none"] = "median"  # optuna: stop trials worse than the median at the same step
    parameters: Annotated[dict[str, Parameter], Field(min_length=1)]
    fixed: Annotated[dict[str, JsonValue], AfterValidator(_no_group)] = Field(default_factory=dict, alias="set")
    config_dir: Path | None = None


def rule_problems(spec: SweepSpec) -> Iterator[tuple[str, str, str | None]]:
    """The rules between keys, as (key, what is wrong, the fix)."""
    if spec.strategy == "grid":
        fix = "delete it, or use strategy: random"
        for key in [k for k in ("trials", "seed", "pruner") if k in spec.model_fields_set]:
            yield key, "does not apply to strategy grid, which runs every combination once.", fix
    elif spec.trials is None:
        yield "trials", f"strategy {spec.strategy} needs `trials:` (a whole number >= 1).", "add e.g. `trials: 8`"
    for key, values in spec.parameters.items():
        nested = isinstance(values, list) and any(isinstance(v, (list, dict)) for v in values)
        if isinstance(values, Range) and spec.strategy == "grid":
            example = f"write e.g. `{key}: [{inline_yaml(values.low)}, {inline_yaml(values.high)}]`"
            yield f"parameters.{key}", "a range needs strategy random or optuna; grid needs a list of values.", example
        elif spec.strategy == "optuna" and nested:
            yield f"parameters.{key}", "optuna can only choose among scalar values (numbers, strings, booleans).", None
    seeded = f"sets {SEED_KEY}, which `seeds:` sets for each run."
    if spec.seeds is not None and SEED_KEY in spec.parameters:
        yield f"parameters.{SEED_KEY}", seeded, "delete it"
    if spec.seeds is not None and SEED_KEY in spec.fixed:
        yield "set", seeded, "delete it and list the seeds in `seeds:`"
    lists = [values for values in spec.parameters.values() if isinstance(values, list)]
    combos = math.prod(map(len, lists))  # distinct parameter sets, when no range makes them endless
    # Both samplers draw from the same finite set: more trials than combinations only repeats runs.
    if spec.strategy != "grid" and spec.trials and len(lists) == len(spec.parameters) and combos < spec.trials:
        message = f"{spec.trials} trials, but the parameters have only {combos} distinct combinations."
        yield "trials", message, "use strategy: grid, or fewer trials"


class Sweep(SweepSpec):
    """A validated sweep file, with its defaults filled in."""

    path: Path
    name: str
    direction: Literal["maximize", "minimize"]
    config_dir: Path

    @property
    def prune(self) -> bool:
        return self.strategy == "optuna" and self.pruner == "median"


def load_sweep(path) -> Sweep:
    """Read and validate a sweep file; every parameter value is checked by the config loader."""
    path = Path(path)
    tree = read_yaml_file(path)

    def origin_of(key: str) -> str:
        """file:line of a dotted key in the sweep file; a parameter's name is one key, dots and all."""
        parts: str | list = key
        head, _, rest = key.partition(".")
        if head in ("parameters", "set") and isinstance(tree.get(head), dict):
            name = max((n for n in tree[head] if rest == n or rest.startswith(f"{n}.")), key=len, default=None)
            parts = [head, name, *rest[len(name) + 1 :].split(".")] if name else [head]
        line = line_of(tree, parts)
        return f"{path}:{line}" if line else str(path)

    try:
        spec = SweepSpec.model_validate(to_plain(tree, str(path), tree))
    except ValidationError as exc:
        raise ConfigError(pydantic_problems(exc, origin_of, root=SweepSpec)) from None
    if problems := [Problem(key, message, fix, origin_of(key)) for key, message, fix in rule_problems(spec)]:
        raise ConfigError(problems)

    GRPOConfigLoader(config_path=spec.base)  # the base itself must be valid (its own file:line in errors)
    checks = [("set", {})]
    for key, values in spec.parameters.items():
        values = [values.low, values.high] if isinstance(values, Range) else values
        checks += [(f"parameters.{key}", {key: value}) for value in values]
    checks += [("seeds", {SEED_KEY: seed}) for seed in spec.seeds or []]
    for at, params in checks:  # the loader's own validation, pointed at the sweep file
        try:
            GRPOConfigLoader(config_path=spec.base, overrides={**spec.fixed, **params})
        except ConfigError as exc:
            raise ConfigError([Problem(p.key, p.message, p.fix, origin_of(at)) for p in exc.problems]) from None
    direction = spec.direction or ("minimize" if lower_is_better(spec.metric) else "maximize")
    filled = {"path": path, "name": spec.name or path.stem, "config_dir": spec.config_dir or spec.base.parent}
    return Sweep.model_construct(**{**spec.__dict__, **filled, "direction": direction})
