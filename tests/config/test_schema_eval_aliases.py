"""`eval.*` is filled once from its `data.*` alias by the schema (issue 20): every reader reads
`eval.*` only. A loop over the three aliases."""

from __future__ import annotations

import pytest

from grpolab.config import GRPOConfigLoader
from grpolab.config.keys import lookup
from grpolab.config.schema import EVAL_ALIASES
from grpolab.config.yaml_io import inline_yaml

VALUES = {"data.eval_split": "eval", "data.eval_samples": 7, "data.eval_every_steps": 3}
HELD_OUT = ["data.eval_split=eval"]  # eval every N steps needs held-out prompts


def test_the_three_aliases():
    assert set(EVAL_ALIASES.values()) == set(VALUES)


@pytest.mark.parametrize(("key", "alias"), sorted(EVAL_ALIASES.items()))
def test_an_unset_eval_key_takes_its_aliases_value(key, alias):
    loader = GRPOConfigLoader(overrides=[*HELD_OUT, f"{alias}={inline_yaml(VALUES[alias])}"])
    assert lookup(loader.to_dict(), key) == VALUES[alias]


@pytest.mark.parametrize(("key", "alias"), sorted(EVAL_ALIASES.items()))
def test_the_eval_key_wins_over_its_alias(key, alias):
    own = {"data.eval_split": "test", "data.eval_samples": 9, "data.eval_every_steps": 5}[alias]
    overrides = [*HELD_OUT, f"{alias}={inline_yaml(VALUES[alias])}", f"{key}={inline_yaml(own)}"]
    assert lookup(GRPOConfigLoader(overrides=overrides).to_dict(), key) == own


@pytest.mark.parametrize(("key", "alias"), sorted(EVAL_ALIASES.items()))
def test_minimize_keeps_the_alias_only(tmp_path, key, alias):
    """A filled eval key is not written beside its alias: it would pin the alias's value."""
    from grpolab.config.files import minimize

    path = tmp_path / "mine.yaml"
    section, _, name = alias.partition(".")
    held = "  eval_split: eval\n" if alias != "data.eval_split" else ""
    path.write_text(f"mode: local\n{section}:\n{held}  {name}: {inline_yaml(VALUES[alias])}\n")
    _, text = minimize(path, tmp_path / "small.yaml")
    assert f"{name}: {inline_yaml(VALUES[alias])}" in text
    assert f"  {key.partition('.')[2]}:" not in text.partition("eval:")[2] or "eval:" not in text


def test_a_held_out_file_is_its_own_split():
    loader = GRPOConfigLoader(overrides=["data.eval_split=eval", "eval.dataset=held.jsonl"])
    assert loader.config.eval.split is None
