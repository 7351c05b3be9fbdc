"""Config files made from other configs: `config new`, `config minimize`, `config ls` / `config cp` (the
shipped presets) and `config show --origins`. Every file is checked to load as the config it stands for first."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, did_you_mean
from .json_schema import SCHEMA_NAME, schema_path
from .keys import MISSING, flatten, lookup, same, unflatten
from .layers import MODES, base_value, preset_dir, preset_path
from .loader import GRPOConfigLoader
from .schema import EVAL_ALIASES
from .yaml_edit import commented, eol_comment, leaves, put_eol_comment, to_tree
from .yaml_io import (
    changed_while_editing,
    dump_yaml,
    inline_yaml,
    read_yaml_file,
    real_path,
    styled_like,
    version_read,
)

SCHEMA_LINE = "yaml-language-server: $schema="
_NAME = re.compile(r"^[\w][\w.-]*$")


def schema_ref(folder) -> str:
    """What a config file in `folder` writes after `$schema=` (relative, as editors resolve it)."""
    folder = Path(folder)
    if (folder / SCHEMA_NAME).exists():
        return SCHEMA_NAME
    relative = Path(os.path.relpath(schema_path(), os.path.abspath(folder))).as_posix()
    return relative if relative.count("..") <= 2 else schema_path().as_posix()


# ----------------------------------------------------------------------------- show --origins
def origins_yaml(loader: GRPOConfigLoader) -> str:
    """The resolved config with each leaf's origin as its end-of-line comment."""
    tree = to_tree(loader.to_dict())
    for key, holder, name, depth in list(leaves(tree)):
        put_eol_comment(holder, name, f"# {loader.origin_of(key)}", depth)
    return dump_yaml(tree)


# ----------------------------------------------------------------------------- new / minimize
def _from_path(source: str) -> Path:
    """`--from`: a mode, a preset name, or a config file."""
    if source in MODES:
        beside = Path("configs") / preset_path(source).name
        if beside.exists() and real_path(beside) == preset_path(source):
            return beside
        return preset_path(source)
    named = preset_dir() / (source if source.endswith(".yaml") else f"{source}.yaml")
    if not Path(source).exists() and "/" not in source and named.is_file():
        return named
    if not Path(source).exists():
        choices = [*MODES, *(p.stem for p in sorted(preset_dir().glob("grpo_*.yaml")))]
        what = f"`{source}` is not a mode, a preset or an existing file.{did_you_mean(source, choices)}"
        fix = f"use one of {', '.join(choices)}, or a path to a config file"
        raise ConfigError.of("--from", what, fix, "config new")
    return Path(source)


def _minimal(loader: GRPOConfigLoader, base: GRPOConfigLoader) -> dict:
    """The keys whose resolved values differ from the base's, as the file wrote them (a `${...}`
    reference stays a reference); lists count whole, as a file replaces them."""
    mine, theirs = flatten(loader.to_dict(), split_lists=False), flatten(base.to_dict(), split_lists=False)
    raw = flatten(loader.layered, split_lists=False)
    kept = {}
    for key, value in mine.items():
        if key == "mode" or same(theirs.get(key, MISSING), value):
            continue
        if key in EVAL_ALIASES and key not in raw:  # it follows its alias, which is compared itself
            continue
        kept[key] = raw.get(key, value)
    return unflatten(kept)


def _changed_from(old) -> str:
    text = inline_yaml(old)
    if len(text) > 60 and isinstance(old, list):
        return f"# Changed from the base's list ({len(old)} item{'s' if len(old) != 1 else ''})"
    return f"# Changed from {text}"


def _build(loader, header: str, out: Path, base_file: Path, data: dict, comments: dict, styled=None) -> str:
    """The text of a config at `out`: `base: BASE_FILE`, `data` with `comments`, under `header`, in
    the line endings of the file `styled`; checked to load as `loader`."""
    tree = commented({"base": base_value(base_file, out.parent), **data}, comments)
    tree.yaml_set_start_comment("\n".join([*header.splitlines(), f"{SCHEMA_LINE}{schema_ref(out.parent)}"]))
    text = dump_yaml(tree) if styled is None else styled_like(styled, dump_yaml(tree))
    loader.check_reproduced_by(text, str(out))
    return text


def based_text(loader: GRPOConfigLoader, base_file: Path, out: Path, header: str, comment, keep=()) -> str:
    """The text of a config at `out` that says `base: BASE_FILE` and loads as `loader`: the keys
    whose values differ from the base file's, and those in `keep` whatever their values, each
    with `comment(key)` (None: no comment) at the end of its line. Checked before it is returned."""
    flat = flatten(_minimal(loader, GRPOConfigLoader(config_path=base_file)), split_lists=False)
    resolved = loader.to_dict()
    data = unflatten({**flat, **{key: lookup(resolved, key) for key in keep}})
    comments = {key: text for key in flatten(data, split_lists=False) if (text := comment(key))}
    return _build(loader, header, out, base_file, data, comments)


def new_config(name: str, source: str, overrides=None) -> tuple[Path, str]:
    """(path, text) of `config new NAME --from SOURCE --set ...`: base: SOURCE and the changed keys."""
    out = _out_path(name)
    base_file = _from_path(source)
    base = GRPOConfigLoader(config_path=base_file)
    loader = base.with_overrides(overrides or [])
    data = _minimal(loader, base)
    old = {key: lookup(base.to_dict(), key) for key in flatten(data, split_lists=False)}
    comments = {key: _changed_from(value) for key, value in old.items() if value is not MISSING}
    header = (
        f"{out.stem}: {source} with the changes below (made by `grpolab config new`).\n"
        "Every key it leaves out keeps its value from `base:`; `grpolab config explain --key KEY`\n"
        "says what a key does."
    )
    return out, _build(loader, header, out, base_file, data, comments)


def minimize(path, out=None, base_source: str | None = None) -> tuple[Path, str]:
    """(path, text) of `config minimize FILE`: `base:` (the file's mode preset, or `base_source`)
    plus only the keys whose values differ from it, each keeping its comment from FILE."""
    path = Path(path)
    out = Path(out) if out is not None else path
    loader = GRPOConfigLoader(config_path=path)
    base_file = _from_path(base_source or loader.mode)
    base = GRPOConfigLoader(config_path=base_file)
    data = _minimal(loader, base)
    tree = read_yaml_file(path)
    if version_read(path) != loader._source_version:  # the comments would come from another version
        raise changed_while_editing(path)
    found = {key: eol_comment(holder, name) for key, holder, name, _ in leaves(tree)}
    comments = {key: found[key] for key in flatten(data, split_lists=False) if found.get(key)}
    header = (
        f"{out.stem}: minimized from {path} by `grpolab config minimize`: `base:` plus the keys whose\n"
        "values differ from it (comments kept). `grpolab config show --config THIS` prints every value."
    )
    return out, _build(loader, header, out, base_file, data, comments, styled=path)


def _out_path(name: str) -> Path:
    if "/" in name or name.endswith((".yaml", ".yml")):
        return Path(name)
    if not _NAME.match(name):
        what = f"`{name}` is not a usable config name (letters, digits, `_`, `-` and `.`)."
        fix = "e.g. `grpolab config new grpo_cluster_high_lr --from cluster`"
        raise ConfigError.of("", what, fix, "config new")
    return Path("configs") / f"{name}.yaml"


# ----------------------------------------------------------------------------- ls / cp
@dataclass
class Shipped:
    name: str  # grpo_local, accelerate/zero3, sweeps/example_sweep
    kind: str  # preset, launcher, sweep, example
    path: Path
    description: str


def shipped() -> list[Shipped]:
    """The presets in the package, then the configs beside them in ./configs (your examples)."""
    root = preset_dir()
    out = []
    for pattern, kind in (("grpo_*.yaml", "preset"), ("accelerate/*.yaml", "launcher"), ("sweeps/*.yaml", "sweep")):
        for path in sorted(root.glob(pattern)):
            name = path.relative_to(root).with_suffix("").as_posix()
            out.append(Shipped(name, kind, path, _first_comment(path)))
    local = Path("configs")
    if local.is_dir() and real_path(local) != root.resolve():
        for path in sorted(local.glob("*.yaml")):
            if real_path(path).parent != root.resolve():
                out.append(Shipped(path.as_posix(), "example", path, _first_comment(path)))
    return out


def _first_comment(path: Path) -> str:
    """The file's first comment line. ./configs is the user's folder: a dangling link (a copied
    checkout's preset links), a folder, a pipe or an unreadable file is listed as what it is."""
    if not path.is_file():  # checked first: reading a pipe would wait forever
        what = "a dangling link or a link loop" if path.is_symlink() else "not a regular file"
        return f"(not readable: {what})"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(not readable: {exc.strerror or type(exc).__name__})"
    for line in text.splitlines():
        text = line.strip()
        if text.startswith("#") and SCHEMA_LINE not in text:
            return text.lstrip("#").strip()
        if text and not text.startswith("#"):
            break
    return ""


def copy_preset(name: str, dest) -> tuple[Path, str]:
    """(path, text) of `config cp NAME DEST`: the preset with a header naming its source."""
    presets = {s.name: s for s in shipped() if s.kind != "example"}
    key = name[:-5] if name.endswith(".yaml") else name
    key = f"grpo_{key}" if key in MODES else key
    if key not in presets:
        what = f"`{name}` is not a shipped preset.{did_you_mean(key, presets)} Presets: {', '.join(presets)}."
        raise ConfigError.of("", what, "list them with `grpolab config ls`", "config cp")
    item = presets[key]
    dest = Path(dest)
    out = dest / item.path.name if dest.is_dir() else dest
    text = item.path.read_text(encoding="utf-8")
    header = f"# Copied from the grpolab preset {item.name} by `grpolab config cp` (edit freely).\n"
    if item.kind == "preset":
        schema = f"# {SCHEMA_LINE}{schema_ref(out.parent)}"
        text = re.sub(r"^# yaml-language-server: \$schema=.*$", schema, text, flags=re.M)
        preset = preset_path(_mode_of(text)).name
        header += f"# It layers over preset {preset}, so a key you delete keeps the preset's value.\n"
    return out, header + text


def _mode_of(text: str) -> str:
    match = re.search(r"^mode:\s*(\w+)", text, re.M)
    return match.group(1) if match and match.group(1) in MODES else "local"
