"""Generate grpolab/config/trl_fields.json: the names, kinds, defaults and help texts of every
TRL GRPOConfig / transformers TrainingArguments field.

The config commands check pass-through keys against this snapshot so they never import
trl (importing it takes seconds). tests/config/test_trl_snapshot.py fails when the snapshot
drifts from the installed trl; regenerate with:

    python -m grpolab.config.trl_snapshot
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from functools import lru_cache
from pathlib import Path

SNAPSHOT_PATH = Path(__file__).with_name("trl_fields.json")


@lru_cache(maxsize=1)
def trl_fields() -> dict:
    """The snapshot: {"training": {field: spec}, "grpo": {field: spec}, versions}. A spec has
    `kinds` (the YAML kinds the field accepts), `default`, and `choices` for enums."""
    return json.loads(SNAPSHOT_PATH.read_text())


_KIND_OF = {bool: "bool", int: "int", float: "float", str: "str", dict: "dict", list: "list", type(None): "null"}


def _kinds(annotation) -> tuple[list[str], list[str] | None]:
    """Reduce a type hint to the YAML kinds it accepts, plus enum choices if any."""
    kinds: set[str] = set()
    choices: list[str] | None = None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            sub_kinds, sub_choices = _kinds(arg)
            kinds.update(sub_kinds)
            choices = sub_choices or choices
    elif origin is typing.Literal:
        for value in typing.get_args(annotation):
            kinds.add(_KIND_OF.get(type(value), "any"))
    elif origin in (list, tuple):
        kinds.add("list")
    elif origin is dict:
        kinds.add("dict")
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        kinds.add("str")
        choices = sorted(str(member.value) for member in annotation)
    else:
        kinds.add(_KIND_OF.get(annotation, "any"))
    return sorted(kinds), choices


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value


def build_snapshot() -> dict:
    import transformers
    import trl

    def describe(cls) -> dict:
        hints = typing.get_type_hints(cls)
        out = {}
        for field in dataclasses.fields(cls):
            kinds, choices = _kinds(hints.get(field.name, field.type))
            entry = {"kinds": kinds, "default": _default(field)}
            if choices:
                entry["choices"] = choices
            help_text = " ".join(str(field.metadata.get("help") or "").split())
            if help_text:
                entry["help"] = help_text  # TRL's own description: the JSON Schema and `config keys` show it
            out[field.name] = entry
        return out

    grpo = describe(trl.GRPOConfig)
    training_names = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    return {
        "trl_version": trl.__version__,
        "transformers_version": transformers.__version__,
        # TrainingArguments fields go under `training:`, GRPO-only fields under `grpo:`.
        # Defaults are GRPOConfig's (TRL overrides some TrainingArguments defaults).
        "training": {k: v for k, v in grpo.items() if k in training_names},
        "grpo": {k: v for k, v in grpo.items() if k not in training_names},
    }


def main() -> None:
    SNAPSHOT_PATH.write_text(json.dumps(build_snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT_PATH}")


if __name__ == "__main__":
    main()
