"""Does the installed TRL / transformers take every field grpolab passes? With the snapshot's own versions,
yes (nothing imported); else the installed GRPOConfig is read once, so a missing field is a problem before any
model loads, not a TypeError inside `GRPOConfig(**kwargs)`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from importlib import metadata

from .errors import INCOMPATIBLE, ConfigError, Problem
from .trl_snapshot import trl_fields

PACKAGES = ("trl", "transformers")


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def supported_range(package: str) -> str | None:
    """The range grpolab's own metadata declares for `package` ('>=5.23.0,<6'), if installed."""
    try:
        requirements = metadata.requires("grpolab") or []
    except metadata.PackageNotFoundError:
        return None
    for requirement in requirements:
        match = re.match(rf"{re.escape(package)}\s*([^;]*)", requirement)
        parts = [part.strip() for part in match.group(1).split(",") if part.strip()] if match else []
        if parts:  # lower bound first: '>=5.23,<6', as a person writes it
            return ",".join(sorted(parts, key=lambda part: not part.startswith(">")))
    return None


def installed_grpo_fields() -> set[str]:
    """Every field of the installed trl.GRPOConfig (TrainingArguments' included). Imports trl."""
    from trl import GRPOConfig

    return {field.name for field in dataclasses.fields(GRPOConfig)}


def field_problems(
    kwargs: Iterable[str],
    versions: Callable[[str], str | None] | None = None,
    fields: Callable[[], set[str]] | None = None,
) -> list[Problem]:
    """One problem per keyword argument in `kwargs` that the installed GRPOConfig does not take.
    `versions` and `fields` read the installed packages unless given."""
    versions, fields = versions or installed_version, fields or installed_grpo_fields
    snapshot = trl_fields()
    installed = {package: versions(package) for package in PACKAGES}
    made_from = {package: snapshot[f"{package}_version"] for package in PACKAGES}
    if installed == made_from or None in installed.values():
        return []  # the snapshot's own versions, or no TRL to compare with (config-only installs)
    problems = []
    for name in sorted(set(kwargs) - fields()):
        package = "transformers" if name in snapshot["training"] else "trl"
        wanted = supported_range(package) or f">={made_from[package]}"
        lacks = f"{package} {installed[package]} is installed, and its GRPOConfig has no field `{name}`"
        source = f"its field list comes from {package} {made_from[package]}; grpolab supports {package}{wanted}"
        fix = f"`pip install '{package}{wanted}'`, or `make venv` in a grpolab checkout (installs the tested set)"
        problems.append(Problem(name, f"{lacks}, which grpolab passes ({source})", fix))
    return problems


def check_installed(kwargs: Iterable[str]) -> None:
    """Raise a ConfigError (exit 2) when the installed TRL/transformers lack a field grpolab passes."""
    if problems := field_problems(kwargs):
        raise ConfigError(problems, kind=INCOMPATIBLE)
