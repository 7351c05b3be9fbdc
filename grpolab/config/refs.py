"""References inside config values, resolved after layering and before validation.

    learning_rate: ${training.learning_rate}     another key's value (its type kept)
    run_tag: "lr_${training.learning_rate}"      inside a string: the value as YAML text
    project: ${env:WANDB_PROJECT,grpolab}        an environment variable, with a default

A reference is recognised only inside a string scalar (the whole scalar or part of it), so YAML
1.2 typing is unchanged everywhere else. A whole-scalar `${env:...}` is read as a YAML 1.2
value, as `--set` values are (so `${env:LR,1e-4}` is a number). A key that is not in the config
takes its schema default. An unknown key, a list item that does not exist, a loop, and an unset
variable without a default are errors naming both ends.
"""

from __future__ import annotations

import os
import re

from .errors import ConfigError, Problem, did_you_mean
from .keys import MISSING, flatten, get_path, join_key, split_key
from .yaml_io import inline_yaml, parse_scalar

REF = re.compile(r"\$\{([^{}]*)\}")


def has_references(data) -> bool:
    if isinstance(data, str):
        return REF.search(data) is not None
    if isinstance(data, dict):
        return any(has_references(v) for v in data.values())
    if isinstance(data, list):
        return any(has_references(v) for v in data)
    return False


def resolve_references(data: dict, origin_of, default_of=lambda key: MISSING) -> dict:
    """A copy of `data` with every reference replaced by its value."""
    if not has_references(data):
        return data
    return _Resolver(data, origin_of, default_of).run()


class _Resolver:
    def __init__(self, data: dict, origin_of, default_of):
        self.data, self.origin_of, self.default_of = data, origin_of, default_of
        self.done: dict[str, object] = {}

    def run(self) -> dict:
        return self.walk(self.data, [], [])

    def walk(self, node, parts, stack):
        if isinstance(node, dict):
            return {k: self.walk(v, [*parts, k], stack) for k, v in node.items()}
        if isinstance(node, list):
            return [self.walk(v, [*parts, i], stack) for i, v in enumerate(node)]
        if isinstance(node, str) and REF.search(node):
            return self.expand(node, join_key(parts), stack)
        return node

    def expand(self, text: str, key: str, stack: list[str]):
        whole = REF.fullmatch(text.strip()) if text.strip() == text else None
        if whole:
            return self.value(whole.group(1).strip(), key, stack, whole=True)
        return REF.sub(lambda m: _as_text(self.value(m.group(1).strip(), key, stack, whole=False)), text)

    def value(self, ref: str, key: str, stack: list[str], whole: bool):
        where = self.origin_of(key)
        if ref.startswith("env:"):
            name, sep, default = ref[len("env:") :].partition(",")
            name = name.strip()
            if name in os.environ:
                text = os.environ[name]
            elif sep:
                text = default.strip()
            else:
                raise ConfigError(
                    Problem(
                        key,
                        f"`${{env:{name}}}`: the environment variable {name} is not set.",
                        f"export {name}=..., or give a default: `${{env:{name},VALUE}}`",
                        where,
                    )
                )
            return parse_scalar(text, f"{where} ${{env:{name}}}") if whole else text
        if ref in stack or ref == key:
            loop = " -> ".join([*stack[stack.index(ref) :], key, ref] if ref in stack else [key, ref])
            raise ConfigError(
                Problem(key, f"references loop: {loop}.", "replace one of the references by a value", where)
            )
        if ref in self.done:
            return self.done[ref]
        try:
            parts = split_key(ref, where)
        except ConfigError:
            raise ConfigError(
                Problem(
                    key,
                    f"`${{{ref}}}` is not a reference: write `${{section.key}}` or `${{env:NAME}}`.",
                    None,
                    where,
                )
            ) from None
        try:
            target = get_path(self.data, parts)
        except IndexError:
            raise ConfigError(
                Problem(key, f"`${{{ref}}}` refers to a list item that does not exist.", None, where)
            ) from None
        except (KeyError, TypeError):
            target = self.default_of(ref)
            if target is MISSING:
                known = list(flatten(self.data))
                raise ConfigError(
                    Problem(
                        key, f"`${{{ref}}}` refers to no key of this config.{did_you_mean(ref, known)}", None, where
                    )
                ) from None
        resolved = self.walk(target, parts, [*stack, key])
        self.done[ref] = resolved
        return resolved


def _as_text(value) -> str:
    return value if isinstance(value, str) else inline_yaml(value)
