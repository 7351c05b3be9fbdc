"""pydantic's ValidationError -> Problems, one per key, with what pydantic cannot know: the key meant, the
section a misplaced TRL field belongs to, the grpolab key that owns a TRL field (owned.py). Another file's
model (a sweep's `SweepSpec`) passes itself as `root`: its unknown keys get suggestions from its own fields."""

from __future__ import annotations

import difflib
import re
import typing

from pydantic import BaseModel, ValidationError

from .errors import Problem, did_you_mean, shown
from .keys import join_key, parent_key
from .owned import OWNED, REMOVED
from .schema import IMPORT_SPEC, SECTIONS, GRPOLabConfig, RewardSpec, members
from .trl_snapshot import trl_fields
from .yaml_io import inline_yaml

_OTHER_SECTION = {"training": "grpo", "grpo": "training"}


# Unknown keys past this many get no suggestion: a file of 50k unknown keys is refused in seconds.
SUGGESTED = 25


def pydantic_problems(exc: ValidationError, origin_of, root: type[BaseModel] = GRPOLabConfig) -> list[Problem]:
    by_key: dict[str, list] = {}  # a union reports each alternative under one key: join them
    unknown: list[Problem] = []
    for err in exc.errors():
        parts = _key_parts(err["loc"], root)
        key = join_key(parts)
        if err["type"] != "extra_forbidden":
            by_key.setdefault(key, []).append((err["msg"].removeprefix("Value error, ").rstrip("."), err))
        elif len(unknown) < SUGGESTED:
            unknown.append(unknown_key(parts, origin_of, root))
        else:  # a "did you mean" costs a fuzzy match over every known key: only the first few get one
            unknown.append(Problem(key, "unknown key.", None, origin_of(key)))
    problems = []
    for key, errs in by_key.items():
        messages = list(dict.fromkeys(m for m, _ in errs))
        prefix = "Input should be "
        joined = len(messages) > 1 and all(m.startswith(prefix) for m in messages)
        message = prefix + ", or ".join(m.removeprefix(prefix) for m in messages) if joined else messages[0]
        err = errs[0][1]
        if "input" in err and err["type"] != "missing" and shown(err["input"]) not in message:
            message += f" (got {shown(err['input'])})"
        # A missing key is not in the file: point at the mapping that lacks it.
        origin = origin_of(parent_key(key) if err["type"] == "missing" else key) if key else None
        message = re.sub(r"a valid dictionary or instance of \w+", "a mapping of `key: value` entries", message)
        fix = _bound_fix(key, errs, root) or _type_fix(key, errs, root)
        if err["type"] == "string_pattern_mismatch" and err["ctx"]["pattern"] == IMPORT_SPEC:
            message = (
                f"must name a function as `module:function` or `path/to/file.py:function` (got {shown(err['input'])})"
            )
            fix = f"write it as `{key.rpartition('.')[2]}: my_module.py:my_function` (the file beside the config)"
        problems.append(Problem(key, message if message.endswith(("?", ".")) else message + ".", fix, origin))
    return unknown + problems


def _key_parts(loc, root: type[BaseModel] = GRPOLabConfig) -> list:
    """pydantic's location -> the keys the user wrote. Where the schema has a union (`int | str`,
    `bool | Literal['auto']`), pydantic adds a label for the alternative (`int`, `literal['auto']`):
    the schema says which parts are labels, so a key named `int` or `str` stays a key."""
    parts: list = []
    current, labelled = root, False
    for part in loc:
        if len(members(current)) > 1 and isinstance(part, str) and not labelled:
            labelled = True
            continue
        labelled = False
        parts.append(part)
        current = _child(current, part)
    return parts


def _child(annotation, part):
    """The annotation of `part` inside any alternative of `annotation` (a field, a list item, a mapping's
    value), else None."""
    for member in members(annotation):
        args = typing.get_args(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(part) if isinstance(part, str) else None
            if field is not None:
                return field.annotation
        elif typing.get_origin(member) in (list, tuple) and isinstance(part, int) and args:
            return args[0]
        elif typing.get_origin(member) is dict and len(args) == 2:
            return args[1]
    return None


def unknown_key(parts: list, origin_of, root: type[BaseModel] = GRPOLabConfig) -> Problem:
    """The problem for a key the schema does not have, with the likeliest fix."""
    key, name = join_key(parts), parts[-1]
    problem = lambda message, fix=None: Problem(key, message, fix, origin_of(key))

    if root is not GRPOLabConfig:
        model = _model_at(parts[:-1], root)
        known = [f.alias or n for n, f in model.model_fields.items()] if model is not None else []
        return problem(f"unknown key.{_suggest(name, known)}")
    fields = trl_fields()
    if parts == ["base"]:  # a file's first line, read before the layers merge
        return problem(
            "names the config a file builds on, so only a config file can set it (not --set or overrides).",
            "put `base: FILE` at the top of your config file, or pass that file with --config",
        )
    if len(parts) == 1:
        top = list(GRPOLabConfig.model_fields)
        where_trl = [f" It is a TRL field: put it under `{s}:`." for s in ("training", "grpo") if name in fields[s]]
        hint = where_trl[-1] if where_trl else ""
        if name in SECTIONS["generation"].model_fields or name in OWNED:
            hint = f" Set it as {OWNED[name].via if name in OWNED else f'`generation.{name}`'}."
        suggestion = did_you_mean(name, top) or f" Allowed: {', '.join(top)}."
        return problem(f"unknown top-level key.{suggestion}{hint}")
    if len(parts) == 3 and parts[0] == "rewards" and isinstance(parts[1], int):
        return problem(
            f"unknown key; allowed: name, weight, kwargs.{did_you_mean(name, RewardSpec.model_fields)}",
            "put reward arguments under `kwargs:`",
        )
    if len(parts) == 2 and parts[0] in SECTIONS:
        section = parts[0]
        own_trl, other = fields.get(section, {}), _OTHER_SECTION.get(section)
        if name in REMOVED:
            return problem(REMOVED[name].why + ".", f"delete `{name}`")
        if name in OWNED and (name in own_trl or (other and name in fields[other]) or not other):
            return problem(f"is set through {OWNED[name].via} in grpolab.", f"move it to {OWNED[name].via}")
        if other and name in fields[other]:
            kind = "GRPOConfig" if other == "grpo" else "TrainingArguments"
            return problem(f"is a {kind} field and belongs under `{other}:`.", f"move it to `{other}.{name}`")
        return problem(f"unknown key.{_suggest(name, [*SECTIONS[section].model_fields, *own_trl])}")
    model = _model_at(parts[:-1])
    return problem(f"unknown key.{_suggest(name, model.model_fields if model is not None else [])}")


def _suggest(key: str, known) -> str:
    """' Did you mean `x`?', else the allowed keys when there are few enough to list."""
    known = list(known)
    return did_you_mean(key, known) or (f" Allowed: {', '.join(known)}." if len(known) <= 15 else "")


def _model_at(parts, root: type[BaseModel] = GRPOLabConfig) -> type[BaseModel] | None:
    """The schema class of the mapping at `parts` (`model.lora` -> LoraConfig). The part after a
    `dict[str, X]` field is a key of that mapping (a sweep's `parameters.grpo.beta` -> its range)."""
    annotation = root
    for part in parts:
        annotation = _child(annotation, part)
    return next((m for m in members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)), None)


def _bound_fix(key: str, errs, root: type[BaseModel]) -> str | None:
    """For a number past an inclusive bound, the nearest allowed value is the smallest fix."""
    for _, err in errs:
        ctx = err.get("ctx") or {}
        for bound in ("ge", "le"):
            if bound in ctx:
                return f"set `{key}: {ctx[bound]}`"
    return _choice_fix(key, errs, root)


def _field(errs, root: type[BaseModel]):
    """The schema field an error is about (its FieldInfo), or None for a list item or a TRL key."""
    parts = _key_parts(errs[0][1]["loc"], root)
    model = _model_at(parts[:-1], root) if parts and isinstance(parts[-1], str) else None
    return model.model_fields.get(parts[-1]) if model is not None else None


def _choice_fix(key: str, errs, root: type[BaseModel]) -> str | None:
    """For a word that is not one of a few choices: the closest choice, else the choices to pick from.
    A validator that knows the value to suggest (a TRL field's closest choice or default) says it in
    the error's `suggest`: None there means the key's default, so deleting it is the fix."""
    for _, err in errs:
        ctx = err.get("ctx") or {}
        if "suggest" in ctx:
            value = ctx["suggest"]
            return f"delete `{key}`" if value in (None, "", [], {}) else f"set `{key}: {inline_yaml(value)}`"
        if err.get("type") != "literal_error":
            continue
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        word = err.get("input")  # a list or number given for a choice has no closest word
        close = difflib.get_close_matches(word, choices, n=1) if isinstance(word, str) else []
        if not close:  # the field's own default, else the first choice: an edit that validates
            field = _field(errs, root)
            close = [field.default] if field is not None and field.default in choices else choices[:1]
        return f"set `{key}: {close[0]}`"
    return None


def _type_fix(key: str, errs, root: type[BaseModel]) -> str | None:
    """For a value of the wrong type: removing it brings back the value it overrode (a preset's, or
    the default), which validated; the field's default shows a value of the right type."""
    if not all(err["type"].endswith(("_type", "_parsing", "_from_float")) for _, err in errs):
        return None  # a value of the right type that a rule refused: its own message says what to do
    field = _field(errs, root)
    if field is None or field.is_required():
        return None
    default = field.default
    example = inline_yaml(default) if default is None or isinstance(default, (bool, int, float, str)) else None
    return f"remove `{key}` (the value it overrides applies)" + (f"; its default is `{example}`" if example else "")
