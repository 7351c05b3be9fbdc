"""Validation, before any model is loaded: keys, types and bounds (pydantic, through the closed schema), then
the rules across fields for the run's world size, all raised together as one ConfigError. Ranges only warn."""

from __future__ import annotations

from pydantic import ValidationError

from . import rules
from .errors import ConfigError, Problem
from .pydantic_errors import pydantic_problems
from .schema import GRPOLabConfig, closed_model


def check(data: dict, origin_of, world_size: int | None) -> tuple[GRPOLabConfig, list[Problem]]:
    """(the typed config, its warnings) for plain config data, or a ConfigError with every problem.
    `world_size` None checks the config's own (target_world_size), and a cluster config whose
    process count is `auto` also on 2, 4 and 8 processes (as warnings)."""
    try:
        closed_model().model_validate(data)
    except ValidationError as exc:
        raise ConfigError(pydantic_problems(exc, origin_of)) from None
    config = GRPOLabConfig.model_validate(data)
    world = target_world_size(config, world_size)
    problems = rules.integer_range_problems(config, origin_of)
    problems += rules.cross_field_problems(config, world, origin_of) + rules.pass_through_problems(config, origin_of)
    steps, step_warnings = rules.step_count_problems(config, world, origin_of) if not problems else ([], [])
    if problems or steps:
        raise ConfigError(problems + steps)
    warnings = rules.range_warnings(config, origin_of) + step_warnings
    if world_size is None and config.mode == "cluster" and config.cluster.num_processes == "auto":
        warnings += rules.world_size_warnings(config, origin_of)
    return config, warnings


def target_world_size(config: GRPOLabConfig, world_size: int | None = None) -> int:
    """Processes a config is checked for: explicit, else cluster.num_processes x num_machines, else 1."""
    if world_size is not None:
        return world_size
    if config.mode == "cluster" and isinstance(config.cluster.num_processes, int):
        return config.cluster.num_processes * config.cluster.num_machines
    return 1
