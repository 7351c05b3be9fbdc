"""GRPOConfigLoader: a config built from its layers (precedence in layers.py), validated, edited
and saved. The mode comes from the `mode` argument, else the file's `mode:`, else local."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path, PurePath

from .errors import ConfigError, did_you_mean
from .keys import MISSING, deep_merge, flatten, get_path, leaf_keys, lookup, same, set_path, split_key
from .layers import (
    MODES,
    Layer,
    Origins,
    base_value,
    chain_mode,
    follow_batch_keys,
    load_chain,
    load_preset,
    parse_assignments,
    resolve_base,
)
from .refs import resolve_references
from .rules import cross_field_problems
from .schema import GRPOLabConfig
from .validate import check, target_world_size
from .yaml_edit import list_cut, set_with_comment
from .yaml_io import (
    changed_while_editing,
    dump_yaml,
    edit_lock,
    parse_yaml_text,
    read_yaml_file,
    real_path,
    styled_like,
    to_plain,
    version_read,
    write_atomic,
)


class GRPOConfigLoader:
    """Load, validate, edit and save a grpolab config (README, "Method 2: programmatic updates")."""

    def __init__(
        self,
        mode: str | None = None,
        config_path=None,
        overrides=None,
        flags: dict | None = None,
        world_size: int | None = None,
        *,
        data: dict | None = None,
        path=None,
    ):
        """`data` is a config file's content given in memory (see from_dict), in place of
        `config_path`; `path` is where that file would be (its `base:` is relative to it)."""
        # `~` as the shell would expand it (a quoted or programmatic path): see schema.expand_home.
        self.config_path = Path(config_path).expanduser() if config_path is not None else None
        self.world_size = _check_world_size(world_size, "GRPOConfigLoader(world_size=...)")
        self._origins = Origins()
        chain: list[Layer] = []
        self._source_version = None  # the config file as read here: save_config edits that version only
        if self.config_path is not None:
            chain = load_chain(self.config_path)
            self._source_version = version_read(self.config_path)
        elif data is not None:
            folder = Path(path).parent if path is not None else None
            chain = load_chain(data=copy.deepcopy(data), label=str(path or "from_dict"), folder=folder)
        for layer in chain:
            self._origins.record(layer)
        file_mode = chain_mode(chain)
        # `--set mode=cluster` picks the preset as --mode does: a mode is never set over the other
        # mode's preset values.
        set_modes = [value for key, value in parse_assignments(overrides) if key == "mode"]
        if set_modes and mode is None:
            mode = set_modes[-1]
        elif set_modes and set_modes[-1] != mode:
            what = f"--mode {mode} and --set mode={set_modes[-1]} disagree."
            raise ConfigError.of("mode", what, "give the mode once (--mode)", "--set mode")
        chosen = mode if mode is not None else (file_mode if file_mode is not None else "local")
        _check_mode(chosen, "--mode" if mode is not None else self._origins.of("mode"))
        self._chain = chain  # the --config file and its bases, root first (no preset)
        self._layer_preset(chosen)
        self._changes: dict[str, tuple[object, object]] = {}  # dotted key -> (value before, value now)
        self._data = copy.deepcopy(self._base)
        if mode is not None and mode != (file_mode or ("local" if chain else chosen)):
            self._apply("mode", chosen, "--mode")
        self._data["mode"] = chosen
        for key, value in parse_assignments(overrides):
            self._apply(key, value, f"--set {key}")
        for key, value in (flags or {}).items():
            self._apply(key, value, f"flag for {key}")
        self._check()

    def _layer_preset(self, mode: str) -> None:
        """Layer the file chain over `mode`'s preset: layers, origins and the merged base."""
        self.mode = mode
        preset = load_preset(mode)
        self.preset_path = preset.path
        # A chain that starts at this mode's preset file does not layer it twice.
        chain = [layer for layer in self._chain if layer.path is None or real_path(layer.path) != preset.path]
        self.layers: list[Layer] = [preset, *chain]  # lowest first
        self._origins = Origins()
        self._base: dict = {}
        for layer in self.layers:
            self._origins.record(layer)
            self._base = deep_merge(self._base, layer.data)
        # The file save_config() edits: the user's file, else the preset itself.
        self.source_path = self.config_path or self.preset_path

    def _change_mode(self, mode, origin: str) -> None:
        """update_param("mode", ...): the other preset goes under the files, as a file whose
        `mode:` says so would load; the changes made so far are kept on top."""
        _check_mode(mode, origin)
        bases = [layer for layer in self._chain[:-1] if layer.data.get("mode") not in (None, mode)]
        if bases:
            what = f"cannot become `{mode}`: its base {bases[0].label} has mode `{bases[0].data['mode']}`."
            fix = f"start from a config of mode {mode} (e.g. `grpolab config new --mode {mode}`)"
            raise ConfigError.of("mode", what, fix, origin)
        changes, origins = self._changes, {key: self._origins.of(key) for key in self._changes}
        before = changes.get("mode", (self._data.get("mode", self.mode), None))[0]
        self._layer_preset(mode)
        self._data = copy.deepcopy(self._base)
        self._changes = {}
        for key, (_, value) in changes.items():
            self._apply(key, value, origins[key])
        self._data["mode"] = mode
        self._changes["mode"] = (before, mode)  # saved files say `mode:`, so they reload over this preset
        self._origins.set("mode", origin)

    def _check(self) -> None:
        """Resolve references, validate everything, keep the typed config and its warnings."""
        notes = follow_batch_keys(self._data, self._origins, self.world_size)
        data = resolve_references(self._data, self.origin_of, schema_default)
        self.config, warnings = check(data, self.origin_of, self.world_size)
        self.warnings = notes + warnings

    @property
    def base_chain(self) -> list[str]:
        """The files under the config file, nearest first (its `base:`, that file's base ...)."""
        return [layer.label for layer in reversed(self.layers[1:-1])] if self.config_path else []

    @classmethod
    def from_dict(cls, data: dict, world_size: int | None = None, *, overrides=None, path=None) -> GRPOConfigLoader:
        """A loader for config data held in memory, layered as a --config file would be
        (at `path`, if given: a `base:` in the data is relative to that file's folder)."""
        return cls(data=data, world_size=world_size, overrides=overrides, path=path)

    def with_overrides(self, overrides) -> GRPOConfigLoader:
        """A new loader: this one with more `--set` overrides (KEY=VALUE strings or a mapping) on top."""
        new = copy.deepcopy(self)
        for key, value in parse_assignments(overrides):
            if key == "mode" and value != new.mode:
                new._change_mode(value, "--set mode")
            new._apply(key, value, f"--set {key}")
        new._check()
        return new

    # ---------------------------------------------------------------- origins and checks
    def origin_of(self, key: str) -> str:
        """Where a key's value came from: a file and line, --set, a flag, update_param, or default."""
        return self._origins.of(key)

    def target_world_size(self, config: GRPOLabConfig | None = None) -> int:
        """Processes the config is checked for: explicit, else cluster.num_processes x num_machines, else 1."""
        return target_world_size(config or self.config, self.world_size)

    def _apply(self, key: str, value, origin: str) -> None:
        parts = split_key(key, origin)
        before = _or_default(self._data, key)
        if isinstance(value, dict) and isinstance(before, dict):
            value = deep_merge(before, value)  # a mapping merges key by key, as a layered file does
        set_path(self._data, parts, copy.deepcopy(value), key, origin)
        first_before = self._changes.get(key, (before, None))[0]
        self._changes[key] = (first_before, value)
        self._origins.set(key, origin)

    # ---------------------------------------------------------------- public API
    def get_param(self, key: str):
        parts = split_key(key, "get_param")
        data = self.to_dict()
        try:
            return copy.deepcopy(get_path(data, parts))
        except (KeyError, IndexError, TypeError):
            raise ConfigError.of(key, f"no such key.{did_you_mean(key, leaf_keys(data))}", None, "get_param") from None

    def update_param(self, key: str, value) -> None:
        """Set one dotted key; the whole config is re-validated at once (nothing changes if invalid)."""
        self.update_params({key: value})

    def update_params(self, updates: dict) -> None:
        """Set several keys together, validated as one change (for edits that only make sense together)."""
        saved = copy.deepcopy(self.__dict__)
        try:
            if "mode" in updates and updates["mode"] != self.mode:
                self._change_mode(updates["mode"], "update_param")
            updates = {key: plain_value(value) for key, value in updates.items()}
            for key, value in updates.items():
                if isinstance(value, float) and value != value:
                    raise ConfigError.of(key, "NaN is not a valid value.", None, "update_param")
                self._apply(key, value, "update_param")
            self._check()
        except ConfigError:
            self.__dict__.update(saved)
            raise

    def to_dict(self) -> dict:
        """Every resolved value, defaults included."""
        return self.config.model_dump(mode="json")

    @property
    def layered(self) -> dict:
        """The layers and changes merged, as written: references unresolved, no schema defaults."""
        return copy.deepcopy(self._data)

    @property
    def overrides(self) -> dict:
        """What --set, flags and update_param changed on top of the files: dotted key -> new value."""
        return {key: new for key, (_, new) in self._changes.items()}

    def trl_kwargs(self, world_size: int | None = None, facts=None) -> dict:
        """Keyword arguments for trl.GRPOConfig (no trl import). Validated for `world_size` processes.
        `facts` (a `runtime.hardware.HardwareFacts`) is the machine the `auto` values are decided
        for; default: this machine, probed without torch (as `config explain` does)."""
        world_size = _check_world_size(world_size, "trl_kwargs(world_size=...)")
        if world_size is not None and world_size != self.target_world_size():
            if problems := cross_field_problems(self.config, world_size, self.origin_of):
                raise ConfigError(problems)
        # The config room's one call upward, named in tests/repo/test_layers.py (SEAMS): the mapping
        # consumes the runtime's decisions, so it lives above them; importing it here, at call time,
        # keeps `import grpolab.config` free of the runtime room.
        from grpolab.runtime.trl_args import trl_kwargs

        return trl_kwargs(self.config, world_size, facts)

    # ---------------------------------------------------------------- saving
    def render(self, path=None, *, full: bool = False) -> str:
        """The source file's text with every change applied and marked `# Changed from OLD`; for `path`, a
        relative `base:` points at the same file from there. `full=True`: one flat file (no `base:`) from the
        mode preset's text, with every value the layers and changes set over it marked."""
        if full:
            tree, base = read_yaml_file(self.preset_path), self.layers[0].data
            changes = {
                key: (before if before is not MISSING else schema_default(key), after)
                for key, before, after in diff_leaves(base, self._data)
            }
        else:
            tree = read_yaml_file(self.source_path)
            if self.config_path is not None and version_read(self.source_path) != self._source_version:
                # The changes would land on someone else's newer text, and the saved file would
                # hold neither version: refuse, as write_atomic does.
                raise changed_while_editing(self.source_path)
            changes, base = self._changes, self._base
            if path is not None and isinstance(tree.get("base"), str) and not tree["base"].startswith("preset:"):
                target = resolve_base(tree["base"], self.source_path.parent)
                if (moved := base_value(target, Path(path).parent)) != tree["base"]:
                    tree["base"] = moved
        for key, (before, after) in changes.items():
            parts = split_key(key, "save")
            # `rewards[0].weight` and the file has no such entry: write the whole list
            if (cut := list_cut(tree, parts)) is not None:
                parts = parts[:cut]
                key = ".".join(parts)
                after, before = get_path(self._data, parts), _or_default(base, key)
            set_with_comment(tree, parts, after, before, key, schema_default)
        return styled_like(self.config_path or self.preset_path, dump_yaml(tree))

    def save_config(self, path, overwrite: bool = False, full: bool = False) -> Path:
        """Write the config, keeping the source file's comments, order and formatting. Each changed
        value gets an end-of-line `# Changed from OLD`. A file with `base:` keeps it (and only its
        own keys) unless `full=True`. Atomic; never overwrites unless asked. Saving over the file
        this loader read refuses ("changed while editing: rerun") if it changed since."""
        with edit_lock(path):
            text = self.render(path, full=full)
            self.check_reproduced_by(text, str(path))
            edits_source = self.config_path is not None and real_path(path) == real_path(self.config_path)
            return write_atomic(path, text, overwrite=overwrite, expect=self._source_version if edits_source else None)

    def check_reproduced_by(self, text: str, origin: str) -> None:
        """Refuse to write `text` (as the file `origin`) unless it loads back to this config."""
        tree = parse_yaml_text(text, origin)
        reloaded = GRPOConfigLoader.from_dict(to_plain(tree, origin, tree), world_size=self.world_size, path=origin)
        if reloaded.to_dict() != self.to_dict():
            what = "internal error: the file would not reproduce this config; nothing was written."
            raise ConfigError.of("", what, None, origin)


def _check_mode(mode, origin: str) -> None:
    if mode not in MODES:
        what = f"`{mode}` is not a mode; allowed: {', '.join(MODES)}.{did_you_mean(str(mode), MODES)}"
        raise ConfigError.of("mode", what, "set `mode: local` or `mode: cluster`", origin)


def plain_value(value):
    """A value from Python code as the YAML it stands for: numpy numbers (np.int64 from a sweep
    grid, np.float32 from a tuner) as int/float/bool, paths as strings, tuples as lists."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        item = value.item()
        # np.float32(1e-4).item() is 9.99999974e-05: its shortest repr is the number that was meant.
        return float(str(value)) if isinstance(item, float) else item
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    return value


def _check_world_size(world_size, origin: str):
    if world_size is not None and (isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1):
        what = f"must be a whole number of processes >= 1, got {world_size!r}."
        raise ConfigError.of("world_size", what, None, origin)
    return world_size


def _or_default(data: dict, key: str):
    """The value of `key` in `data`, else its schema default."""
    value = lookup(data, key)
    return value if value is not MISSING else schema_default(key)


def schema_default(key: str):
    """The schema default of a key the files do not set (MISSING for a pass-through TRL field)."""
    return lookup(_defaults(), key)


@lru_cache(maxsize=1)
def _defaults() -> dict:
    return GRPOLabConfig().model_dump(mode="json")


def diff_leaves(lower: dict, upper: dict) -> list[tuple[str, object, object]]:
    """(key, value below, value above) for what `upper` sets differently; lists count whole."""
    low, up = flatten(lower, split_lists=False), flatten(upper, split_lists=False)
    return [(key, low.get(key, MISSING), value) for key, value in up.items() if not same(low.get(key, MISSING), value)]
