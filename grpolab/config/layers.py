"""Layers and origins: the files a config is built from, and where each value came from.

Precedence (lowest first): schema defaults < mode preset < --config file < --set overrides
< explicit flags and update_param(). Each value remembers its origin: `FILE:LINE`,
`preset grpo_local.yaml:LINE`, `--set KEY`, `flag for KEY`, `update_param` or `default`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from .errors import ConfigError, Problem
from .keys import join_key
from .schema import SECTIONS
from .yaml_io import line_of, parse_scalar, read_yaml_file, to_plain

MODES = ("local", "cluster")


def preset_dir() -> Path:
    """The presets shipped inside the package (grpolab/presets); configs/ in a checkout links to them."""
    return Path(__file__).resolve().parents[1] / "presets"


def preset_path(mode: str) -> Path:
    return preset_dir() / f"grpo_{mode}.yaml"


@dataclass
class Layer:
    """One config file (or in-memory mapping) as plain data, with its round-trip tree for lines."""

    data: dict
    label: str  # how origins name it: the path, or `preset grpo_local.yaml`
    path: Path | None = None
    tree: CommentedMap | None = None


def load_layer(path, label: str | None = None) -> Layer:
    path = Path(path)
    tree = read_yaml_file(path)
    data = to_plain(tree, str(path), tree)
    for section in SECTIONS:
        if section in data and data[section] is None:
            data[section] = {}  # `training:` with every key commented out sets nothing
    return Layer(data, label or str(path), path, tree)


def load_preset(mode: str) -> Layer:
    path = preset_path(mode)
    return load_layer(path, f"preset {path.name}")


class Origins:
    """Where each dotted key's value came from; sections remember where they start."""

    def __init__(self):
        self.values: dict[str, str] = {}
        self.sections: dict[str, str] = {}

    def copy(self) -> Origins:
        out = Origins()
        out.values, out.sections = dict(self.values), dict(self.sections)
        return out

    def record(self, layer: Layer) -> None:
        """Every leaf of a layer (a later layer's record wins)."""

        def walk(node, parts):
            if isinstance(node, dict) and node:
                if parts:
                    self.sections[join_key(parts)] = self._at(layer, parts)
                for key, value in node.items():
                    walk(value, [*parts, key])
            else:
                self.values[join_key(parts)] = self._at(layer, parts)

        walk(layer.data, [])

    @staticmethod
    def _at(layer: Layer, parts) -> str:
        line = line_of(layer.tree, ".".join(str(p) for p in parts)) if layer.tree is not None else None
        return f"{layer.label}:{line}" if line else layer.label

    def set(self, key: str, origin: str) -> None:
        self.values[key] = origin

    def of(self, key: str) -> str:
        """Where a key's value came from: its own entry, else its closest section's, else default."""
        probe = key
        while probe:
            if probe in self.values:
                return self.values[probe]
            probe = _parent(probe)
        if key in self.sections:
            return self.sections[key]
        for known, origin in self.values.items():
            if known.startswith(key + "."):
                head, _, line = origin.rpartition(":")
                return head if head and line.isdigit() else origin
        return "default"


def _parent(key: str) -> str:
    """'rewards[0].weight' -> 'rewards[0]' -> 'rewards' -> ''."""
    if key.endswith("]"):
        return key[: key.rindex("[")]
    return key.rpartition(".")[0]


def parse_assignments(items, origin: str = "--set") -> list[tuple[str, object]]:
    """`KEY=VALUE` strings (or a mapping) -> [(key, value)]; each value is read as YAML 1.2,
    so `1e-4` is a float and `[a, b]` a list."""
    if not items:
        return []
    if isinstance(items, dict):
        return list(items.items())
    parsed = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                Problem(
                    "",
                    f"`{item}` is not of the form KEY=VALUE.",
                    "write e.g. `--set training.learning_rate=1e-4`",
                    origin,
                )
            )
        parsed.append((key.strip(), parse_scalar(text, f"{origin} {key.strip()}")))
    return parsed
