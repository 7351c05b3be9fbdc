"""What each key is, in words (its schema `description`, or TRL's help text): one source for the JSON Schema,
`config explain --key`, `config keys` and the presets' comments, which read `description[; NOTE]` or
`description (NOTE)`. `python -m grpolab.config.describe` rewrites the presets' comments from the schema."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError, Problem, did_you_mean
from .json_schema import config_schema
from .keys import split_key
from .owned import OWNED
from .rules import RECOMMENDED
from .schema import SECTIONS, trl_names
from .trl_snapshot import trl_fields
from .yaml_edit import eol_comment, leaves, put_eol_comment
from .yaml_io import dump_yaml, inline_yaml, read_yaml_file


@lru_cache(maxsize=1)
def _schema() -> dict:
    return config_schema()


def _deref(node: dict) -> dict:
    while "$ref" in node:
        node = _schema()["$defs"][node["$ref"].rpartition("/")[2]]
    return node


def _object(node: dict) -> dict | None:
    """The object schema a node holds (through $ref), or None for a leaf."""
    node = _deref(node)
    return node if node.get("type") == "object" and "properties" in node else None


def schema_node(key: str) -> dict | None:
    """The JSON Schema of a dotted key (`rewards[0].weight` and `rewards.weight` alike), or None."""
    node: dict = _schema()
    for part in split_key(key):
        node = _deref(node)
        if isinstance(part, int):
            if "items" not in node:
                return None
            node = node["items"]
            continue
        if node.get("type") == "array" and "items" in node:
            node = _deref(node["items"])
        node = (node.get("properties") or {}).get(part)
        if node is None:
            return None
    return node


def all_keys() -> list[tuple[str, str]]:
    """(key, description) of every leaf key the schema knows, pass-through TRL fields included."""
    out: list[tuple[str, str]] = []

    def walk(node: dict, prefix: str) -> None:
        for name, sub in node["properties"].items():
            key = f"{prefix}.{name}" if prefix else name
            items = _object(_deref(sub).get("items", {})) if _deref(sub).get("type") == "array" else None
            if _object(sub) is not None:
                walk(_object(sub), key)
            elif items is not None:
                walk(items, f"{key}[]")
            else:
                out.append((key, description(sub)))

    walk(_schema(), "")
    return out


def description(node: dict | None) -> str:
    return (node.get("description") or _deref(node).get("description") or "") if node else ""


def one_line(text: str, width: int = 100) -> str:
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first if len(first) <= width else first[: width - 3].rstrip() + "..."


def matches(word: str, key: str, text: str) -> bool:
    """`config keys WORD`: in the key, in its description, or the initials of its name (lr)."""
    word = word.lower()
    name = key.rpartition(".")[2].replace("[]", "")
    in_text = re.search(rf"\b{re.escape(word)}", text.lower()) is not None
    return word in key.lower() or in_text or "".join(w[0] for w in name.split("_") if w) == word


def type_text(node: dict) -> str:
    """A key's type and allowed values, in words: `number > 0`, `integer >= 1, or auto`."""
    node = _deref(node)
    if "anyOf" in node:
        return ", or ".join(type_text(sub) for sub in node["anyOf"])
    if "const" in node:
        return f"`{inline_yaml(node['const'])}`"
    if "enum" in node:
        return "one of: " + ", ".join(inline_yaml(v) for v in node["enum"])
    kinds = node.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    text = " or ".join(kinds)
    if "array" in kinds and "items" in node:
        text = text.replace("array", f"list of ({type_text(node['items'])})")
    bounds = [
        f"{op} {inline_yaml(node[name])}"
        for name, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
        if name in node
    ]
    if "minItems" in node:
        bounds.append(f"at least {node['minItems']} item(s)")
    return text + (" " + ", ".join(bounds) if bounds else "")


@dataclass
class KeyInfo:
    key: str
    description: str
    type: str
    default: object
    has_default: bool
    recommended: str | None
    trl_field: str | None
    pass_through: bool


def key_info(key: str) -> KeyInfo:
    """Everything the schema says about one key; a ConfigError (with a suggestion) if unknown."""
    node = schema_node(key)
    canonical = re.sub(r"\[\d+\]", "[]", key)
    if node is None or _object(node) is not None:
        known = [k for k, _ in all_keys()]
        if node is not None:
            inner = [k for k in known if k.startswith(canonical + ".")]
            raise ConfigError.of(key, f"is a section; its keys: {', '.join(inner)}.")
        fix = "list the keys with `grpolab config keys`"
        raise ConfigError.of(key, f"no such key.{did_you_mean(canonical, known)}", fix)
    section, _, name = key.partition(".")
    pass_through = section in ("training", "grpo") and name in trl_fields()[section]
    rec = RECOMMENDED.get(key)
    also = f", or {inline_yaml(rec.also)}" if rec and rec.also is not None else ""
    node = _deref(node) if "description" not in node else node
    return KeyInfo(
        key=key,
        description=description(node),
        type=type_text(node),
        default=node.get("default"),
        has_default="default" in node,
        recommended=f"{inline_yaml(rec.low)} to {inline_yaml(rec.high)}{also}" if rec else None,
        trl_field=trl_field(key),
        pass_through=pass_through and name not in SECTIONS[section].model_fields,
    )


def trl_field(key: str) -> str | None:
    """The GRPOConfig argument a key becomes (runtime/trl_args.py writes them), or None."""
    typed = trl_names().get(re.sub(r"\[\d+\]", "[]", key))
    section, _, name = key.partition(".")
    if typed or section not in ("training", "grpo"):
        return typed
    return name if name in trl_fields()[section] and name not in OWNED else None


# ----------------------------------------------------------------------------- preset comments
def comment_for(key: str, note: str | None = None) -> str:
    """A preset's comment on a key: the description, then the preset's own note."""
    text = description(schema_node(key))
    if not note or not text:
        return text or note or ""
    return f"{text} {note}" if note.startswith("(") else f"{text}; {note}"


def note_of(key: str, comment: str) -> str | None:
    """The preset's own note in a comment that follows the description rule, else the whole comment."""
    text = description(schema_node(key))
    if text and comment == text:
        return None
    if text and comment.startswith((text + "; ", text + " (")):
        return comment[len(text) :].lstrip(";").strip()
    return comment


def preset_comment_problems(path) -> list[Problem]:
    """Keys of a preset whose end-of-line comment does not start with the key's description."""
    problems = []
    for key, holder, name, _ in leaves(read_yaml_file(path)):
        comment = eol_comment(holder, name).lstrip("#").strip()
        text = description(schema_node(key))
        if key == "rewards" or not comment or not text or note_of(key, comment) != comment or comment == text:
            continue
        line = holder.lc.key(name)[0] + 1
        problems.append(
            Problem(key, f"comment {comment!r} does not start with the description {text!r}.", None, f"{path}:{line}")
        )
    return problems


def sync_comments(path) -> str:
    """The preset's text with every key's comment rewritten as description[; note], and every
    uncommented key given its description."""
    tree = read_yaml_file(path)
    for key, holder, name, depth in list(leaves(tree)):
        if key == "rewards" or schema_node(key) is None:
            continue
        old = eol_comment(holder, name).lstrip("#").strip()
        put_eol_comment(holder, name, "# " + comment_for(key, note_of(key, old) if old else None), depth)
    return dump_yaml(tree)


def main() -> None:
    from .layers import preset_dir

    for path in sorted(Path(preset_dir()).glob("grpo_*.yaml")):
        text = sync_comments(path)
        if text != path.read_text():
            path.write_text(text)
            print(f"rewrote {path}")


if __name__ == "__main__":
    main()
