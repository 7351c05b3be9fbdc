"""The JSON Schema (draft 2020-12) of schema.closed_model(), so editors and `config validate` agree; TRL
fields carry TRL's help, any non-string value may be a `${...}` reference, cross-field rules are not in it.
Regenerate: `grpolab config schema -o configs/grpolab.schema.json --force`."""

from __future__ import annotations

import json
from pathlib import Path

from .owned import OWNED, REMOVED
from .schema import KIND_CHECK, SECTIONS, closed_model
from .trl_snapshot import trl_fields

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_NAME = "grpolab.schema.json"
_JSON_TYPE = dict(
    bool="boolean", int="integer", float="number", str="string", dict="object", list="array", null="null"
)
BASE_DESCRIPTION = (
    "another config file this one layers over (relative to this file; it may have a base of its own); "
    "`preset:NAME` names a shipped preset"
)


def schema_path() -> Path:
    """The shipped copy, inside the package (configs/grpolab.schema.json links to it)."""
    return Path(__file__).resolve().parents[1] / "presets" / SCHEMA_NAME


def trl_field_schema(spec: dict) -> dict:
    """JSON Schema of a pass-through TRL field, from its snapshot entry."""
    kinds = spec["kinds"]
    out: dict = {}
    if "any" not in kinds:
        types = [_JSON_TYPE[k] for k in kinds if k in _JSON_TYPE]  # `python`: no JSON value is one
        out["type"] = types[0] if len(types) == 1 else types
    if spec.get("choices") and set(kinds) <= {"str", "null"}:
        out["enum"] = [*spec["choices"], *([None] if "null" in kinds else [])]
    if spec.get("help"):
        out["description"] = spec["help"]
    default = spec.get("default")
    if any(KIND_CHECK[k](default) for k in kinds) and (not out.get("enum") or default in out["enum"]):
        out["default"] = default
    return out


def config_schema() -> dict:
    schema = closed_model().model_json_schema()
    fields = trl_fields()
    _strip_titles(schema)
    defs = schema["$defs"]
    for section in ("training", "grpo"):
        ref = schema["properties"][section]["$ref"].rpartition("/")[2]
        props = defs[ref]["properties"]
        for name, spec in fields[section].items():
            if name in SECTIONS[section].model_fields:
                if spec.get("choices") and props[name].get("type") == "string":
                    props[name]["enum"] = spec["choices"]  # lr_scheduler_type: TRL's names, for completion
                continue
            if name not in OWNED and name not in REMOVED:
                props[name] = trl_field_schema(spec)
    for definition in defs.values():
        for name, prop in definition.get("properties", {}).items():
            definition["properties"][name] = _or_reference(prop)
    properties = {"base": {"type": "string", "description": BASE_DESCRIPTION}, **schema["properties"]}
    return {
        "$schema": DRAFT,
        "title": "grpolab config",
        "description": "A grpolab GRPO training config (`grpolab config explain --key KEY` explains any key).",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "$defs": defs,
    }


# `${training.learning_rate}` or `${env:LR,1e-5}` where a number, list or boolean goes.
REFERENCE = {"type": "string", "pattern": r"^\$\{[^{}]*\}$"}
_META = ("description", "default")


def _any_string(schema: dict) -> bool:
    """Admits every string (so every reference too): a plain string, or a union with one."""
    if schema.get("type") == "string" and not {"enum", "const", "pattern"} & set(schema):
        return True
    return any(_any_string(option) for option in schema.get("anyOf", []))


def _or_reference(prop: dict) -> dict:
    """A value's schema, or a reference, for every value whose schema does not already admit it."""
    if not prop or '"$ref"' in json.dumps(prop) or _any_string(prop):
        return prop  # sub-sections are objects of their own
    meta = {k: prop[k] for k in _META if k in prop}
    core = {k: v for k, v in prop.items() if k not in _META}
    options = core["anyOf"] if set(core) == {"anyOf"} else [core]  # a union grows by one member
    return {"anyOf": [*options, REFERENCE], **meta}


def schema_text() -> str:
    return json.dumps(config_schema(), indent=1, ensure_ascii=False) + "\n"


def _strip_titles(node) -> None:
    """pydantic titles every property ("Learning Rate"): noise in an editor's hover. The TRL names too."""
    if isinstance(node, dict):
        props = node.get("properties")
        for sub in props.values() if isinstance(props, dict) else ():
            if isinstance(sub, dict):
                sub.pop("title", None)
                sub.pop("trl", None)  # schema.trl_names reads it; editors have no use for it
        node = list(node.values())
    for item in node if isinstance(node, list) else ():
        _strip_titles(item)
