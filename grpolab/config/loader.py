"""GRPOConfigLoader: layered loading, validated edits, and comment-preserving saves.

Precedence (lowest first): schema defaults < mode preset < --config file < --set overrides
< explicit flags (--model ...) and update_param(). The mode comes from the `mode` argument,
else the file's `mode:`, else local.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)
from ruamel.yaml.tokens import CommentToken

from .errors import ConfigError, Problem, did_you_mean
from .schema import SECTIONS, GRPOLabConfig
from .validate import check_keys, cross_field_problems, pydantic_problems, range_warnings
from .yaml_io import (
    _double_quoted,
    dump_yaml,
    inline_yaml,
    line_of,
    parse_scalar,
    parse_yaml_text,
    read_yaml_file,
    to_plain,
    write_atomic,
)

MODES = ("local", "cluster")
_PART = re.compile(r"^([A-Za-z_][\w-]*)(?:\[(\d+)\])?$")


def preset_dir() -> Path:
    """configs/ beside the grpolab package (the repo root, or site-packages after install)."""
    return Path(__file__).resolve().parents[2] / "configs"


def preset_path(mode: str) -> Path:
    return preset_dir() / f"grpo_{mode}.yaml"


def split_key(key: str, origin: str) -> list[str | int]:
    """'rewards[0].weight' -> ['rewards', 0, 'weight']."""
    parts: list[str | int] = []
    for piece in key.split("."):
        match = _PART.match(piece)
        if not match:
            raise ConfigError(
                Problem(key, "is not a dotted key like `training.learning_rate` or `rewards[0].weight`.", None, origin)
            )
        parts.append(match.group(1))
        if match.group(2) is not None:
            parts.append(int(match.group(2)))
    return parts


def _get(data, parts):
    for part in parts:
        data = data[part]
    return data


def _set(data: dict, parts, value, key: str, origin: str) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(Problem(key, f"index {part} is out of range.", None, origin))
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise ConfigError(Problem(key, f"`{parts[i - 1]}` is not a section.", None, origin))
        if part not in node or node[part] is None:
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(Problem(key, f"index {last} is out of range.", None, origin))
    elif not isinstance(node, dict):
        raise ConfigError(Problem(key, f"`{'.'.join(map(str, parts[:-1]))}` is not a section.", None, origin))
    node[last] = value


def deep_merge(base: dict, top: dict) -> dict:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _leaves(data, prefix=""):
    if isinstance(data, dict) and data:
        for key, value in data.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, data


def _load_layer(path: Path) -> tuple[CommentedMap, dict]:
    tree = read_yaml_file(path)
    data = to_plain(tree, str(path), tree)
    for section in SECTIONS:
        if section in data and data[section] is None:
            data[section] = {}  # `training:` with every key commented out sets nothing
    return tree, data


class GRPOConfigLoader:
    """Load, validate, edit and save a grpolab config.

    >>> loader = GRPOConfigLoader(mode="cluster")
    >>> loader.update_param("training.learning_rate", 1e-4)
    >>> loader.save_config("configs/grpo_cluster_experiment1.yaml")
    """

    def __init__(
        self,
        mode: str | None = None,
        config_path=None,
        overrides=None,
        flags: dict | None = None,
        world_size: int | None = None,
    ):
        self.config_path = Path(config_path) if config_path is not None else None
        self.world_size = _check_world_size(world_size, "GRPOConfigLoader(world_size=...)")
        self._origins: dict[str, str] = {}
        self._sections: dict[str, str] = {}  # where each section (a mapping) starts, for messages about it
        file_data: dict = {}
        if self.config_path is not None:
            file_tree, file_data = _load_layer(self.config_path)
            self._record_origins(file_data, file_tree, str(self.config_path))
        file_mode = file_data.get("mode")
        chosen = mode if mode is not None else (file_mode if file_mode is not None else "local")
        if chosen not in MODES:
            source = "--mode" if mode is not None else self._origins.get("mode", "mode")
            raise ConfigError(
                Problem(
                    "mode",
                    f"`{chosen}` is not a mode; allowed: {', '.join(MODES)}.{did_you_mean(str(chosen), MODES)}",
                    "set `mode: local` or `mode: cluster`",
                    source,
                )
            )
        self.mode = chosen
        self.preset_path = preset_path(chosen)
        preset_tree, preset_data = _load_layer(self.preset_path)
        preset_origins, file_sections = dict(self._origins), dict(self._sections)
        self._origins = {}
        self._record_origins(preset_data, preset_tree, f"preset {self.preset_path.name}")
        self._origins.update(preset_origins)
        self._sections.update(file_sections)
        # The file save_config() edits: the user's file, else the preset itself.
        self.source_path = self.config_path or self.preset_path
        self._base = deep_merge(preset_data, file_data)
        self._changes: dict[str, tuple[object, object]] = {}  # dotted key -> (value before, value now)
        self._data = copy.deepcopy(self._base)
        if mode is not None and mode != (file_mode or ("local" if self.config_path else chosen)):
            self._apply("mode", chosen, "--mode")
        self._data["mode"] = chosen
        for key, value in self._parse_overrides(overrides):
            self._apply(key, value, f"--set {key}")
        for key, value in (flags or {}).items():
            self._apply(key, value, f"flag for {key}")
        self.config, self.warnings = self._validate(self._data)

    # ---------------------------------------------------------------- loading helpers
    def _record_origins(self, data: dict, tree, label: str) -> None:
        for dotted, _ in _leaves(data):
            line = line_of(tree, dotted)
            self._origins[dotted] = f"{label}:{line}" if line else label
            parts = dotted.split(".")
            for i in range(1, len(parts)):
                section = ".".join(parts[:i])
                line = line_of(tree, section)
                self._sections[section] = f"{label}:{line}" if line else label

    def origin_of(self, key: str) -> str | None:
        """Where a key's value came from: a file and line, --set, a flag, update_param, or default."""
        probe = key
        while probe:
            if probe in self._origins:
                return self._origins[probe]
            probe = probe.rpartition(".")[0]
        if key in self._sections:
            return self._sections[key]
        for known, origin in self._origins.items():
            if known.startswith(key + "."):
                return origin.rsplit(":", 1)[0] if ":" in origin and origin.rsplit(":", 1)[1].isdigit() else origin
        return "default"

    @staticmethod
    def _parse_overrides(overrides):
        if not overrides:
            return []
        if isinstance(overrides, dict):
            return list(overrides.items())
        parsed = []
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(
                    Problem(
                        "",
                        f"`{item}` is not of the form key=value.",
                        "write e.g. `--set training.learning_rate=1e-4`",
                        "--set",
                    )
                )
            parsed.append((key.strip(), parse_scalar(text, f"--set {key.strip()}")))
        return parsed

    def _apply(self, key: str, value, origin: str) -> None:
        parts = split_key(key, origin)
        try:
            before = _get(self._data, parts)
        except (KeyError, IndexError, TypeError):
            before = _get_default(key)
        if isinstance(value, dict) and isinstance(before, dict):
            value = deep_merge(before, value)  # a mapping merges key by key, as a layered file does
        _set(self._data, parts, copy.deepcopy(value), key, origin)
        first_before = self._changes.get(key, (before, None))[0]
        self._changes[key] = (first_before, value)
        self._origins[key] = origin

    def _validate(self, data: dict):
        problems = check_keys(data, self.origin_of)
        config = None
        try:
            config = GRPOLabConfig.model_validate(data)
        except ValidationError as exc:
            problems += pydantic_problems(exc, self.origin_of)
        if config is not None:  # report cross-field problems alongside key problems
            problems += cross_field_problems(config, self.target_world_size(config), self.origin_of)
        if problems:
            raise ConfigError(problems)
        warnings = range_warnings(config, self.origin_of)
        if self.world_size is None and config.mode == "cluster" and config.cluster.num_processes == "auto":
            for w in (2, 4, 8):
                for p in cross_field_problems(config, w, self.origin_of):
                    warnings.append(Problem(p.key, f"would fail on {w} processes: {p.message}", p.fix, p.origin))
        return config, warnings

    def target_world_size(self, config: GRPOLabConfig | None = None) -> int:
        """Processes the config is checked for: explicit, else cluster.num_processes x num_machines, else 1."""
        config = config or self.config
        if self.world_size is not None:
            return self.world_size
        if config.mode == "cluster" and isinstance(config.cluster.num_processes, int):
            return config.cluster.num_processes * config.cluster.num_machines
        return 1

    # ---------------------------------------------------------------- public API
    def get_param(self, key: str):
        parts = split_key(key, "get_param")
        try:
            return copy.deepcopy(_get(self.to_dict(), parts))
        except (KeyError, IndexError, TypeError):
            raise ConfigError(
                Problem(
                    key, f"no such key.{did_you_mean(key, [k for k, _ in _leaves(self.to_dict())])}", None, "get_param"
                )
            ) from None

    def update_param(self, key: str, value) -> None:
        """Set one dotted key; the whole config is re-validated at once (nothing changes if invalid)."""
        self.update_params({key: value})

    def update_params(self, updates: dict) -> None:
        """Set several keys together, validated as one change (for edits that only make sense together)."""
        saved = copy.deepcopy((self._data, self._changes, self._origins))
        try:
            for key, value in updates.items():
                if isinstance(value, float) and value != value:
                    raise ConfigError(Problem(key, "NaN is not a valid value.", None, "update_param"))
                self._apply(key, value, "update_param")
            self.config, self.warnings = self._validate(self._data)
        except ConfigError:
            self._data, self._changes, self._origins = saved
            raise

    def to_dict(self) -> dict:
        """Every resolved value, defaults included."""
        return self.config.model_dump(mode="json")

    @property
    def overrides(self) -> dict:
        """What --set, flags and update_param changed on top of the files: dotted key -> new value."""
        return {key: new for key, (_, new) in self._changes.items()}

    def trl_kwargs(
        self,
        world_size: int | None = None,
        *,
        device: str = "cpu",
        bf16_supported: bool = False,
        use_vllm: bool = False,
        liger_installed: bool = False,
    ) -> dict:
        """Keyword arguments for trl.GRPOConfig (no trl import). Validated for `world_size` processes."""
        from .trl_mapping import to_trl_kwargs

        world_size = _check_world_size(world_size, "trl_kwargs(world_size=...)")
        if world_size is not None and world_size != self.target_world_size():
            problems = cross_field_problems(self.config, world_size, self.origin_of)
            if problems:
                raise ConfigError(problems)
        return to_trl_kwargs(
            self.config,
            device=device,
            bf16_supported=bf16_supported,
            use_vllm=use_vllm,
            liger_installed=liger_installed,
        )

    def render(self) -> str:
        """The source file's text with every change applied and marked `# Changed from OLD`."""
        tree = read_yaml_file(self.source_path)
        for key, (before, after) in self._changes.items():
            parts = split_key(key, "save")
            cut = _list_cut(tree, parts)
            if cut is not None:  # `rewards[0].weight` and the file has no such entry: write the whole list
                parts = parts[:cut]
                key = ".".join(parts)
                after = _get(self._data, parts)
                try:
                    before = _get(self._base, parts)
                except (KeyError, IndexError, TypeError):
                    before = _get_default(key)
            _set_with_comment(tree, parts, after, before, key)
        return dump_yaml(tree)

    def save_config(self, path, overwrite: bool = False) -> Path:
        """Write the config, keeping the source file's comments, order and formatting. Each changed
        value gets an end-of-line `# Changed from OLD`. Atomic; never overwrites unless asked."""
        text = self.render()
        self._check_round_trip(text, str(path))
        return write_atomic(path, text, overwrite=overwrite)

    def _check_round_trip(self, text: str, origin: str) -> None:
        data = to_plain(parse_yaml_text(text, origin), origin)
        reloaded = GRPOConfigLoader._from_data(data, world_size=self.world_size)
        if reloaded.to_dict() != self.to_dict():
            raise ConfigError(
                Problem(
                    "",
                    "internal error: the saved file would not reproduce this config; nothing was written.",
                    None,
                    origin,
                )
            )

    @classmethod
    def _from_data(cls, data: dict, world_size: int | None = None) -> GRPOConfigLoader:
        """A loader for in-memory file data (as if it were a --config file)."""
        self = cls.__new__(cls)
        self.config_path, self.world_size, self._origins, self._sections, self._changes = None, world_size, {}, {}, {}
        self.mode = data.get("mode", "local")
        if self.mode not in MODES:
            raise ConfigError(
                Problem("mode", f"`{self.mode}` is not a mode; allowed: {', '.join(MODES)}.", None, None)
            )
        self.preset_path = self.source_path = preset_path(self.mode)
        _, preset_data = _load_layer(self.preset_path)
        self._base = deep_merge(preset_data, data)
        self._data = copy.deepcopy(self._base)
        self._data["mode"] = self.mode
        self.config, self.warnings = self._validate(self._data)
        return self


def _check_world_size(world_size, origin: str):
    if world_size is not None and (isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1):
        raise ConfigError(
            Problem("world_size", f"must be a whole number of processes >= 1, got {world_size!r}.", None, origin)
        )
    return world_size


class _Missing:
    """A key with no schema default (a pass-through TRL field): whether it is in the file matters."""

    def __deepcopy__(self, memo):
        return self  # stays the one sentinel through update_params' rollback copy

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _get_default(key: str):
    """The schema default for a key the files do not set (for `# Changed from` comments)."""
    try:
        return _get(GRPOLabConfig().model_dump(mode="json"), split_key(key, "default"))
    except (KeyError, IndexError, TypeError, ConfigError):
        return _MISSING


def _list_cut(tree, parts) -> int | None:
    """If the tree lacks the list item `parts` goes through, how many parts name that list."""
    node = tree
    for i, part in enumerate(parts):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return i
        elif not isinstance(node, dict) or part not in node:
            later = [j for j in range(i + 1, len(parts)) if isinstance(parts[j], int)]
            return later[0] if later else None
        node = node[part]
    return None


def _same(a, b) -> bool:
    """Equal and of the same types (1, 1.0 and True are different values in a config file)."""
    return repr(a) == repr(b)


def _set_with_comment(tree: CommentedMap, parts, value, before, key: str) -> None:
    """Set a value in a round-trip tree and mark it `# Changed from OLD`, keeping other comments.

    A mapping value is merged key by key (as layering does); only the keys that change are
    marked. Comment lines that followed the old last entry of a section (blank lines and the
    next section's header) stay below whatever is appended or replaced there."""
    if before is not _MISSING and _same(before, value):
        return
    node, tail = tree, ""
    for part, nxt in zip(parts[:-1], parts[1:]):
        if isinstance(node, CommentedMap) and (part not in node or node[part] is None):
            if part not in node:
                tail = tail or _take_tail(node, appending_to=node)
            node[part] = CommentedMap() if not isinstance(nxt, int) else CommentedSeq()
        node = node[part]
    last = parts[-1]
    if not isinstance(node, CommentedMap):
        node[last] = _to_tree(value)  # a list item: no end-of-line comment to add
        return
    old = node.get(last)
    if isinstance(value, dict) and isinstance(old, CommentedMap):
        for name, sub in value.items():
            sub_before = before[name] if isinstance(before, dict) and name in before else _get_default(f"{key}.{name}")
            _set_with_comment(old, [name], sub, sub_before, f"{key}.{name}")
        return
    if last not in node:
        tail = tail or _take_tail(node, appending_to=node)
    elif isinstance(old, (CommentedMap, CommentedSeq)):
        tail = tail or _take_tail(old)
    if isinstance(value, str) and "\n" in value:
        value = DoubleQuotedScalarString(value)  # one line, "...\n...", whatever quoting the old value had
    node[last] = new = _to_tree(value)
    note = f"# Changed from {inline_yaml(None if before is _MISSING else before)}"
    token = node.ca.items.get(last, [None, None, None, None])[2]
    first, _, rest = token.value.partition("\n") if token is not None else ("", "", "")
    kept = first.strip()
    if kept.startswith("# Changed from"):  # marked by an earlier save: the new mark replaces it
        _, sep, own = kept.partition("  #")
        kept = "#" + own if sep else ""
    comment = note + (f"  {kept}" if kept else "")  # the key's own comment stays, word for word
    if isinstance(new, (CommentedMap, CommentedSeq)) and new:
        # A block value starts on the next line: the lines after the key's comment go below it.
        tail, rest = tail or rest, ""
        _put_tail(new, tail)
        tail = ""
    column = _eol_column(node, last, value)
    if token is None:
        node.yaml_add_eol_comment(comment, last, column=column)
        token = node.ca.items[last][2]
    elif column is not None:
        token.column = column
    if column is None:
        comment = " " + comment  # a brand-new mapping has no column yet; with the emitter's space: two, as in the seed
    token.value = comment + ("\n" + (tail or rest) if (tail or rest) else "")


def _last_leaf(container):
    """(holder, key) of the entry printed last inside a mapping or list, or None."""
    holder, key = None, None
    while isinstance(container, (CommentedMap, CommentedSeq)) and len(container):
        holder = container
        key = list(container.keys())[-1] if isinstance(container, CommentedMap) else len(container) - 1
        container = container[key]
    return (holder, key) if holder is not None else None


def _token_slot(holder) -> int:
    return 2 if isinstance(holder, CommentedMap) else 0


def _take_tail(container, appending_to: CommentedMap | None = None) -> str:
    """Detach the comment lines after the last entry's own end-of-line comment; return them.

    When a key is appended to `appending_to`, only the lines from the first comment at or left
    of that mapping's key column move (the next section's header, the file's closing notes);
    comments indented deeper belong to the entry above and stay with it."""
    leaf = _last_leaf(container)
    if leaf is None:
        return ""
    holder, key = leaf
    slots = holder.ca.items.get(key)
    token = slots[_token_slot(holder)] if slots else None
    if token is None:
        return ""
    first, _, rest = token.value.partition("\n")
    lines = rest.splitlines(keepends=True)
    start = 0
    if appending_to is not None:
        column = _key_column(appending_to)
        starts = [
            i for i, ln in enumerate(lines) if ln.lstrip().startswith("#") and len(ln) - len(ln.lstrip()) <= column
        ]
        start = starts[0] if starts else len(lines)
        while start > 0 and not lines[start - 1].strip():
            start -= 1  # the blank lines before a header go with it
    stay, move = "".join(lines[:start]), "".join(lines[start:])
    if not move:
        return ""
    if first.strip() or stay:
        token.value = first + "\n" + stay
    else:
        slots[_token_slot(holder)] = None
    return move


def _key_column(node: CommentedMap) -> int:
    try:
        return next(iter(node.lc.data.values()))[1]
    except (StopIteration, AttributeError, TypeError):
        return 0


def _put_tail(container, tail: str) -> None:
    """Attach comment lines after the last entry of a (new) mapping or list."""
    leaf = _last_leaf(container) if tail else None
    if leaf is None:
        return
    holder, key = leaf
    slots = holder.ca.items.setdefault(key, [None, None, None, None])
    token = slots[_token_slot(holder)]
    if token is None:
        slots[_token_slot(holder)] = CommentToken("\n" + tail, CommentMark(0), None)
    else:
        first, _, rest = token.value.partition("\n")
        token.value = f"{first}\n{rest}{tail}"


def _eol_column(node: CommentedMap, key, value) -> int | None:
    """Column two spaces after `key: value` (the seed's style), from the key's or a sibling's indent."""
    try:
        indent = node.lc.key(key)[1] if key in (node.lc.data or {}) else next(iter(node.lc.data.values()))[1]
    except (StopIteration, AttributeError, TypeError):
        return None  # a brand-new mapping: ruamel places the comment
    stored = node.get(key)  # ruamel keeps a replaced string's quoting style
    if isinstance(value, (dict, list)) and value:
        shown = ""  # block values start below
    elif isinstance(stored, DoubleQuotedScalarString):
        shown = " " + _double_quoted(str(value))
    elif isinstance(stored, SingleQuotedScalarString):
        shown = " '" + str(value).replace("'", "''") + "'"
    elif isinstance(stored, (LiteralScalarString, FoldedScalarString)):
        return None
    else:
        shown = f" {inline_yaml(value)}"
    return indent + len(f"{key}:{shown}") + 2


def _to_tree(value):
    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _to_tree(v)
        return out
    if isinstance(value, list):
        return CommentedSeq(_to_tree(v) for v in value)
    return value
