"""Layers and origins: the files a config is built from, and where each value came from.

Precedence (lowest first): schema defaults < mode preset < the `base:` chain of the --config file, root first
< the --config file < --set overrides < flags and update_param(). Origins read `FILE:LINE`, `preset
grpo_local.yaml:LINE`, `--set KEY`, `flag for KEY`, `update_param` or `default`. `base: PATH` is relative to
the file's folder (or `preset:NAME`); a loop, a missing base or a base of another mode is an error."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from .derive import followed_generation_batch, generation_round
from .errors import ConfigError, Problem
from .keys import join_key, lookup, parent_key
from .schema import SECTIONS
from .yaml_io import line_of, parse_scalar, read_yaml_file, real_path, to_plain

MODES = ("local", "cluster")


def preset_dir() -> Path:
    """The presets shipped inside the package (grpolab/presets); configs/ in a checkout links to them."""
    return Path(__file__).resolve().parents[1] / "presets"


def preset_path(mode: str) -> Path:
    return preset_dir() / f"grpo_{mode}.yaml"


@dataclass
class Layer:
    """One config file (or in-memory mapping) as plain data, with its round-trip tree for lines.
    `data` holds no `base:` key: `base` keeps its value as written."""

    data: dict
    label: str  # how origins name it: the path, or `preset grpo_local.yaml`
    path: Path | None = None
    tree: CommentedMap | None = None
    base: str | None = None


def load_layer(path, label: str | None = None) -> Layer:
    path = Path(path)
    tree = read_yaml_file(path)
    return _layer(to_plain(tree, str(path), tree), label or str(path), path, tree)


def _layer(data: dict, label: str, path: Path | None, tree) -> Layer:
    data = dict(data)
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        where = Origins._at(Layer(data, label, path, tree), ["base"])
        what = f"must be a path to a config file, got {base!r}."
        raise ConfigError.of("base", what, "write `base: other_config.yaml`", where)
    for section in SECTIONS:
        if section in data and data[section] is None:
            data[section] = {}  # `training:` with every key commented out sets nothing
    return Layer(data, label, path, tree, base)


def resolve_base(value: str, folder: Path) -> Path:
    """Where `base: VALUE` of a file in `folder` points."""
    if value.startswith("preset:"):
        name = value[len("preset:") :]
        return preset_dir() / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    return Path(os.path.normpath(folder / Path(value).expanduser()))


def base_value(target, folder) -> str:
    """How a file in `folder` names `target` as its base: the path relative to `folder`, or
    `preset:NAME` for a shipped preset that is not beside it (an installed package's presets)."""
    target, folder = Path(target), Path(folder)
    relative = Path(os.path.relpath(os.path.abspath(target), os.path.abspath(folder))).as_posix()
    if real_path(target).parent == preset_dir().resolve():
        beside = folder / target.name
        if beside.exists() and real_path(beside) == real_path(target):
            return target.name
        if relative.count("..") > 1:
            return f"preset:{target.stem}"
    return relative


def load_chain(path=None, data: dict | None = None, label: str = "from_dict", folder=None) -> list[Layer]:
    """A config file (or in-memory data) and its `base:` chain, root first."""
    if path is not None:
        top = load_layer(path)
        folder = Path(path).parent
    else:
        top = _layer(data or {}, label, None, None)
        folder = Path(folder) if folder is not None else Path.cwd()
    chain = [top]
    seen = [real_path(path)] if path is not None else []
    names = [str(path) if path is not None else label]
    while chain[0].base is not None:
        child = chain[0]
        target = resolve_base(child.base, folder)
        shown = " -> ".join([*names, str(target)])
        fix = f"point `base:` at a config file (relative to the folder of {child.label}) or write `preset:NAME`"
        real = real_path(target)
        problem = None
        if real in seen:
            problem = f"the base chain loops: {shown}.", "remove `base:` from one of them"
        elif not target.exists():
            full = "" if str(target) == child.base else f" ({target})"
            problem = f"`{child.base}` not found{full}; chain: {shown}.", fix
        elif target.is_dir():
            problem = f"`{child.base}` is a directory; chain: {shown}.", fix
        elif target.suffix not in (".yaml", ".yml"):
            problem = f"`{child.base}` is not a YAML config file (.yaml); chain: {shown}.", fix
        if problem:
            raise ConfigError.of("base", *problem, Origins._at(child, ["base"]))
        is_preset = real.parent == preset_dir().resolve()
        try:
            layer = load_layer(target, f"preset {target.name}" if is_preset else str(target))
        except ConfigError as exc:  # say where in the chain that file is
            chained = f" (base chain: {shown})."
            raise ConfigError([replace(p, message=p.message.rstrip(".") + chained) for p in exc.problems]) from None
        chain.insert(0, layer)
        seen.append(real)
        names.append(str(target))
        folder = target.parent
    return chain


def chain_mode(chain: list[Layer]) -> str | None:
    """The mode a chain sets (its top-most `mode:`), or None. Two files of one chain that set
    different modes are an error: a base is layered over its own mode's preset."""
    setting = [layer for layer in reversed(chain) if layer.data.get("mode") is not None]
    for layer in setting[1:]:
        top, mode = setting[0].data["mode"], layer.data["mode"]
        if mode != top:
            names = " -> ".join(layer.label for layer in reversed(chain))
            what = f"`{top}` here, but its base {layer.label} has mode `{mode}` (chain: {names})."
            fix = f"use a base of mode {top}, or set `mode: {mode}` here"
            raise ConfigError.of("mode", what, fix, Origins._at(setting[0], ["mode"]))
    return setting[0].data["mode"] if setting else None


def load_preset(mode: str) -> Layer:
    path = preset_path(mode)
    return load_layer(path, f"preset {path.name}")


class Origins:
    """Where each dotted key's value came from; sections remember where they start."""

    def __init__(self):
        self.values: dict[str, str] = {}
        self.sections: dict[str, str] = {}
        # key -> the recorded keys below it (`a` -> `a.b`, `a.b[0]` ...), so that replacing a key
        # drops what was below it without scanning every key: recording a layer stays linear in
        # its size (a 60k-entry `env:` map took minutes when each key scanned all the others).
        self._below: dict[str, dict[str, None]] = {}

    def record(self, layer: Layer) -> None:
        """Every leaf of a layer (a later layer's record wins)."""

        def walk(node, parts):
            if isinstance(node, dict) and node:
                if parts:
                    self.sections[join_key(parts)] = self._at(layer, parts)
                    if join_key(parts) in self.values:  # a mapping replaces a list or value below it
                        self.set(join_key(parts), self._at(layer, parts))
                for key, value in node.items():
                    walk(value, [*parts, key])
                return
            if parts:
                self.set(join_key(parts), self._at(layer, parts))  # a list replaces the one below it whole
            if isinstance(node, list):
                for i, item in enumerate(node):
                    if isinstance(item, dict):
                        walk(item, [*parts, i])

        walk(layer.data, [])

    @staticmethod
    def _at(layer: Layer, parts) -> str:
        line = line_of(layer.tree, parts) if layer.tree is not None else None
        return f"{layer.label}:{line}" if line else layer.label

    def set(self, key: str, origin: str) -> None:
        """`key` now comes from `origin`, and so does everything inside it."""
        for known in self._below.pop(key, ()):
            if known.startswith((key + ".", key + "[")):
                self.values.pop(known, None)
        self.values[key] = origin
        for i, char in enumerate(key):
            if char in ".[" and i:
                self._below.setdefault(key[:i], {})[key] = None

    def of(self, key: str) -> str:
        """Where a key's value came from: its own entry, else its closest section's, else default."""
        own = self.values.get(key) or self.sections.get(key)
        if own is not None:  # a later layer that changed a part of it (`--set rewards[0].weight=0`)
            later = (self.values.get(known) for known in self._below.get(key, ()))
            changed = next((origin for origin in later if origin and _label(origin) != _label(own)), None)
            if changed or key not in self.values:
                return changed or own
        probe = key
        while probe:
            if probe in self.values:
                return self.values[probe]
            probe = parent_key(probe)
        inside = (self.values.get(known) for known in self._below.get(key, ()) if known.startswith(key + "."))
        return next((_label(origin) for origin in inside if origin is not None), "default")


def _label(origin: str) -> str:
    """An origin without its line: the layer it names."""
    head, _, line = origin.rpartition(":")
    return head if head and line.isdigit() else origin


# A value a preset pins for its own batch keys is derived from them: grpo_local.yaml's
# `generation_batch_size: 8` is one group of 8 at one completion per micro-step. Once a layer above
# the presets sets one of those keys, that 8 no longer fits (P 16 does not divide it), so the
# preset's value follows them instead, and the origin says so.
FOLLOWING = "grpo.generation_batch_size"
# What TRL derives it from (P x world size x steps); num_generations only rounds it to whole groups.
BATCH_KEYS = (
    *("training.per_device_train_batch_size", "training.gradient_accumulation_steps", "grpo.steps_per_generation"),
    *("cluster.num_processes", "cluster.num_machines"),
)
FOLLOWS = "follows "


def _from_a_preset(origin: str) -> bool:
    return origin == "default" or origin.startswith(("preset ", FOLLOWS))


def follow_batch_keys(data: dict, origins: Origins, world_size: int | None) -> list[Problem]:
    """Make a preset's generation_batch_size follow the batch keys a user's layer set (in `data`
    and `origins`): the note that says so, or none when nothing follows."""
    origin = origins.of(FOLLOWING)
    pinned = lookup(data, FOLLOWING)
    if not origin.startswith(FOLLOWS) and not (origin.startswith("preset ") and pinned != "auto"):
        return []
    P, GA, steps, processes, machines = (lookup(data, key, None) for key in BATCH_KEYS)
    G = lookup(data, "grpo.num_generations", None)
    machines = 1 if machines is None else machines
    if not all(type(v) is int and v > 0 for v in (P, GA, G, machines)):
        return []  # validation names the bad value
    set_by_user = [key for key in BATCH_KEYS if not _from_a_preset(origins.of(key))]
    # A group size of the user's that the pinned round does not hold whole makes it follow too.
    if not _from_a_preset(origins.of("grpo.num_generations")) and (type(pinned) is not int or pinned % G):
        set_by_user.append("grpo.num_generations")
    if not set_by_user:
        return []
    world = world_size
    if world is None:  # a cluster's `auto` processes: TRL derives the round on the launched world size
        world = 1 if data.get("mode") != "cluster" else processes * machines if type(processes) is int else None
    value = followed_generation_batch(P, GA, G, steps if type(steps) is int else None, world)
    # A value that follows already says what the preset had (the data holds the followed value).
    following = origin.startswith(FOLLOWS)
    was = origin.partition(" (was ")[2][:-1] if following else f"{data['grpo']['generation_batch_size']} in {origin}"
    data["grpo"]["generation_batch_size"] = value
    users = ", ".join(f"{key} {lookup(data, key)}" for key in set_by_user)
    origins.set(FOLLOWING, f"{FOLLOWS}{users} (was {was})")
    if world is not None:
        completions = generation_round(P, GA, value, steps, world)[0]
        value = f"{'auto = ' * (value == 'auto')}{completions} completions per round"
    return [Problem(FOLLOWING, f"follows {users}: {value} (was {was})", None, None)]


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
            fix = "write e.g. `--set training.learning_rate=1e-4`"
            raise ConfigError.of("", f"`{item}` is not of the form KEY=VALUE.", fix, origin)
        parsed.append((key.strip(), parse_scalar(text, f"{origin} {key.strip()}")))
    return parsed
