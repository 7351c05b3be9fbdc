"""References inside config values, resolved after layering and before validation.

    learning_rate: ${training.learning_rate}     another key's value (its type kept)
    run_tag: "lr_${training.learning_rate}"      inside a string: the value as YAML text
    project: ${env:WANDB_PROJECT,grpolab}        an environment variable, with a default

Only string scalars hold references, so YAML typing is unchanged elsewhere; a whole-scalar `${env:...}` is
read as YAML, as `--set` values are. A key not in the config takes its schema default; an unknown key, a
missing list item, a loop or an unset variable without a default is an error naming both ends."""

from __future__ import annotations

import os
import re

from .errors import ConfigError, did_you_mean
from .keys import MISSING, flatten, get_path, join_key, split_key
from .yaml_io import inline_yaml, parse_scalar

REF = re.compile(r"\$\{([^{}]*)\}")


def has_references(data) -> bool:
    if isinstance(data, dict):
        data = list(data.values())
    if isinstance(data, list):
        return any(has_references(v) for v in data)
    return isinstance(data, str) and REF.search(data) is not None


def resolve_references(data: dict, origin_of, default_of=lambda key: MISSING) -> dict:
    """A copy of `data` with every reference replaced by its value."""
    if not has_references(data):
        return data
    done: dict[str, object] = {}

    def walk(node, parts, stack):
        if isinstance(node, dict):
            return {k: walk(v, [*parts, k], stack) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, [*parts, i], stack) for i, v in enumerate(node)]
        if isinstance(node, str) and REF.search(node):
            return expand(node, join_key(parts), stack)
        return node

    def expand(text: str, key: str, stack: list[str]):
        whole = REF.fullmatch(text.strip()) if text.strip() == text else None
        if whole:
            return value(whole.group(1).strip(), key, stack, whole=True)
        return REF.sub(lambda m: _as_text(value(m.group(1).strip(), key, stack, whole=False)), text)

    def value(ref: str, key: str, stack: list[str], whole: bool):
        where = origin_of(key)
        problem = lambda message, fix=None: ConfigError.of(key, message, fix, where)

        if ref.startswith("env:"):
            name, sep, default = ref[len("env:") :].partition(",")
            name = name.strip()
            if name not in os.environ and not sep:
                raise problem(
                    f"`${{env:{name}}}`: the environment variable {name} is not set.",
                    f"export {name}=..., or give a default: `${{env:{name},VALUE}}`",
                )
            text = os.environ.get(name, default.strip())
            return parse_scalar(text, f"{where} ${{env:{name}}}") if whole else text
        if ref in stack or ref == key:
            loop = " -> ".join([*stack[stack.index(ref) :], key, ref] if ref in stack else [key, ref])
            raise problem(f"references loop: {loop}.", "replace one of the references by a value")
        if ref in done:
            return done[ref]
        try:
            parts = split_key(ref, where)
        except ConfigError:
            raise problem(f"`${{{ref}}}` is not a reference: write `${{section.key}}` or `${{env:NAME}}`.") from None
        try:
            target = get_path(data, parts)
        except IndexError:
            raise problem(f"`${{{ref}}}` refers to a list item that does not exist.") from None
        except (KeyError, TypeError):
            target = default_of(ref)
            if target is MISSING:
                raise problem(
                    f"`${{{ref}}}` refers to no key of this config.{did_you_mean(ref, flatten(data))}"
                ) from None
        done[ref] = walk(target, parts, [*stack, key])
        return done[ref]

    return walk(data, [], [])


def _as_text(value) -> str:
    return value if isinstance(value, str) else inline_yaml(value)
