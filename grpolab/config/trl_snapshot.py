"""Generate trl_fields.json: the names, kinds, defaults and help of every GRPOConfig / TrainingArguments
field, so the config commands never import trl (seconds). tests/config/test_trl_snapshot.py fails when it
drifts from the installed trl; regenerate with `python -m grpolab.config.trl_snapshot`."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import types
import typing
from functools import lru_cache
from pathlib import Path

SNAPSHOT_PATH = Path(__file__).with_name("trl_fields.json")


@lru_cache(maxsize=1)
def trl_fields() -> dict:
    """The snapshot: {"training": {field: spec}, "grpo": {field: spec}, versions}. A spec has
    `kinds` (the YAML kinds the field accepts; `python` for a Python object, which no YAML value is),
    `default`, `choices`: the values TRL takes for a string (or each item of a list), and `json`: true
    where TRL's constructor reads a string that starts with `{` as a JSON object (its CLI form)."""
    return json.loads(SNAPSHOT_PATH.read_text())


_KIND_OF = {bool: "bool", int: "int", float: "float", str: "str", dict: "dict", list: "list", type(None): "null"}


def _kinds(annotation) -> tuple[list[str], list[str] | None]:
    """Reduce a type hint to the YAML kinds it accepts, plus enum choices if any."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        subs = [_kinds(arg) for arg in typing.get_args(annotation)]
        return sorted({kind for kinds, _ in subs for kind in kinds}), next((c for _, c in reversed(subs) if c), None)
    if origin is typing.Literal:
        return sorted({_KIND_OF.get(type(value), "any") for value in typing.get_args(annotation)}), None
    if origin in (list, tuple):
        return ["list"], None
    if origin is dict:
        return ["dict"], None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return ["str"], sorted(str(member.value) for member in annotation)
    if dataclasses.is_dataclass(annotation):
        return ["python"], None  # a Python object (accelerate's ParallelismConfig): no YAML value is one
    return [_KIND_OF.get(annotation, "any")], None


# Where TRL's help lists a field's values: "Options: 'a', 'b'", "Must be one of `a` or `b`",
# "Supported values are ...". A value is quoted and not the right side of `other_field='x'`.
_LISTED_AFTER = re.compile(r"Options:|one of|Supported (?:values|options) are", re.I)
_QUOTED = re.compile(r"(?<![=\w])[`']+([a-z][a-z0-9_]*)['`]+")
_LITERAL = re.compile(r"`'([a-z][a-z0-9_-]*)'`")  # `'token'`: a string value, as TRL's help writes one


def _documented_choices(field: dataclasses.Field, names: set[str]) -> list[str] | None:
    """The values a str field takes, from TRL's metadata, else from its help text. A parse that does
    not include the field's own default (or that has none to check against) is dropped."""
    if field.metadata.get("choices"):
        return sorted(map(str, field.metadata["choices"]))
    if field.name in _CONSUMER_CHOICES:
        return sorted(_CONSUMER_CHOICES[field.name]())
    text = " ".join(str(field.metadata.get("help") or "").split())
    listed = _LISTED_AFTER.search(text)
    found = set(_QUOTED.findall(text[listed.start() :])) if listed else set()
    found = (found | set(_LITERAL.findall(text))) - names
    default = _default(field)
    fits = default in found if isinstance(default, str) and default else default is not None
    return sorted(found) if found and fits else None


def _compile_modes() -> list[str]:
    from torch._inductor import list_mode_options

    return list(list_mode_options())


def _cache_implementations() -> list[str]:
    from transformers.generation.configuration_utils import ALL_CACHE_IMPLEMENTATIONS

    return [*ALL_CACHE_IMPLEMENTATIONS, "paged"]  # what GenerationConfig.validate accepts


# Fields TRL passes straight to a library that checks the value only when training starts.
_CONSUMER_CHOICES = {"torch_compile_mode": _compile_modes, "cache_implementation": _cache_implementations}


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
        names = {field.name for field in dataclasses.fields(cls)}
        out = {}
        for field in dataclasses.fields(cls):
            kinds, choices = _kinds(hints.get(field.name, field.type))
            if not choices and ("str" in kinds or "list" in kinds):
                choices = _documented_choices(field, names)
            # `help` is TRL's own description: the JSON Schema and `config keys` show it.
            help_text = " ".join(str(field.metadata.get("help") or "").split())
            is_json = field.name in getattr(cls, "_VALID_DICT_FIELDS", ())
            extra = {"choices": choices, "json": is_json, "help": help_text}
            out[field.name] = {"kinds": kinds, "default": _default(field), **{k: v for k, v in extra.items() if v}}
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
