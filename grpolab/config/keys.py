"""Dotted keys (`training.learning_rate`, `rewards[0].weight`): the one place that splits, reads, writes,
flattens and compares them, so every command that lists keys (config diff, compare, resume) names a change alike."""

from __future__ import annotations

import copy
import re

from .errors import ConfigError

_PART = re.compile(r"^([A-Za-z_][\w-]*)(?:\[(\d+)\])?$")


class _Missing:
    """The value of a key that is not there (a key absent on one side of a diff, a pass-through
    TRL field with no schema default). Never equal to a real value, including None."""

    def __deepcopy__(self, memo=None):
        return self  # one sentinel, through every copy

    __copy__ = __deepcopy__

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


def split_key(key: str, origin: str | None = None) -> list[str | int]:
    """'rewards[0].weight' -> ['rewards', 0, 'weight']."""
    parts: list[str | int] = []
    for piece in key.split("."):
        match = _PART.match(piece)
        if not match:
            what = "is not a dotted key like `training.learning_rate` or `rewards[0].weight`."
            raise ConfigError.of(key, what, origin=origin)
        parts.append(match.group(1))
        if match.group(2) is not None:
            parts.append(int(match.group(2)))
    return parts


def join_key(parts) -> str:
    """['rewards', 0, 'weight'] -> 'rewards[0].weight'."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).removeprefix(".")


def parent_key(key: str) -> str:
    """'rewards[0].weight' -> 'rewards[0]' -> 'rewards' -> ''."""
    if key.endswith("]"):
        return key[: key.rindex("[")]
    return key.rpartition(".")[0]


def get_path(data, parts):
    """The value at `parts`; KeyError, IndexError or TypeError when it is not there."""
    for part in parts:
        if isinstance(part, int) and not isinstance(data, list):
            raise TypeError(part)
        data = data[part]
    return data


def lookup(data, key: str, default=MISSING):
    """The value of a dotted key, or `default` when it is not there."""
    try:
        return get_path(data, split_key(key))
    except (KeyError, IndexError, TypeError, ConfigError):
        return default


def set_path(data: dict, parts, value, key: str | None = None, origin: str | None = None) -> None:
    """Set the value at `parts`, creating the sections on the way. A list item must exist."""
    key = key if key is not None else join_key(parts)
    node = data
    for i, part in enumerate(parts):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError.of(key, f"index {part} is out of range.", origin=origin)
        elif not isinstance(node, dict):
            raise ConfigError.of(key, f"`{join_key(parts[:i])}` is not a section.", origin=origin)
        if i == len(parts) - 1:
            node[part] = value
        else:
            if isinstance(part, str) and node.get(part) is None:
                node[part] = [] if isinstance(parts[i + 1], int) else {}
            node = node[part]


def deep_merge(base: dict, top: dict) -> dict:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flatten(data, prefix: str = "", *, split_lists: bool = True) -> dict:
    """{'training': {'learning_rate': 1e-4}} -> {'training.learning_rate': 1e-4}. A list of mappings is split
    into items (`rewards[0].weight`) unless `split_lists` is False (a file replaces a list whole); a list of
    plain values is one leaf. An empty mapping adds no keys (`env: {}` vs `env: {A: "1"}` differs in `env.A`)."""
    out: dict = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else key, split_lists=split_lists))
    elif split_lists and isinstance(data, list) and data and any(isinstance(v, dict) for v in data):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{i}]"))
    else:
        out[prefix] = data
    return out


def unflatten(flat: dict) -> dict:
    """The inverse of flatten(..., split_lists=False): {'a.b': 1} -> {'a': {'b': 1}}."""
    out: dict = {}
    for key, value in flat.items():
        set_path(out, split_key(key), copy.deepcopy(value), key)
    return out


def same(a, b) -> bool:
    """Equal and of the same types (1, 1.0 and True are different values in a config file)."""
    return repr(a) == repr(b)


def diff(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """(key, value in a, value in b) for every flattened key whose values differ, in the order
    the keys first appear (a's, then b's). A key on one side only has MISSING on the other."""
    flat_a, flat_b = flatten(a), flatten(b)
    rows = [(key, flat_a.get(key, MISSING), flat_b.get(key, MISSING)) for key in dict.fromkeys([*flat_a, *flat_b])]
    return [row for row in rows if not same(row[1], row[2])]


def leaf_keys(data) -> list[str]:
    """Every flattened key of a config (for did-you-mean suggestions)."""
    return list(flatten(data))
