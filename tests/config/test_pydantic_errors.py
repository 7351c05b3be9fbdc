"""Keys named like pydantic's union labels (`int`, `str`, `constrained-int`, `literal['a']`) are keys:
pydantic_errors tells a label from a key by the schema's structure, not by the name. Generator
over every label name x the top level, every section, `--set`, and a sweep file."""

from __future__ import annotations

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.schema import SECTIONS
from grpolab.experiment.sweep.spec import load_sweep

LABELS = ["int", "str", "float", "bool", "dict", "list", "none", "constrained-int", "literal['a']", "a[b]"]


def _problem_keys(**kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:  # a ConfigError, never an IndexError
        GRPOConfigLoader(mode="local", **kwargs)
    return [p.key for p in info.value.problems]


@pytest.mark.parametrize("label", LABELS)
def test_a_label_named_key_is_named_at_every_level(label, tmp_path):
    path = tmp_path / "k.yaml"
    quoted = f'"{label}"'
    path.write_text(f"{quoted}: 1\n")
    assert _problem_keys(config_path=path) == [label]
    for section in SECTIONS:
        path.write_text(f"{section}:\n  {quoted}: 1\n")
        assert _problem_keys(config_path=path) == [f"{section}.{label}"], section
    if "[" not in label:  # `--set` keys are dotted names
        for section in SECTIONS:
            assert _problem_keys(overrides=[f"{section}.{label}=1"]) == [f"{section}.{label}"], section
        assert _problem_keys(overrides=[f"{label}=1"]) == [label]


@pytest.mark.parametrize("label", LABELS)
def test_a_label_named_key_in_a_sweep_file_is_named(label, tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("mode: local\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f'name: s\nbase: {base}\nparameters:\n  grpo.beta: [0.1, 0.2]\n"{label}": 1\n')
    with pytest.raises(ConfigError) as info:
        load_sweep(sweep)
    assert [p.key for p in info.value.problems] == [label]
    sweep.write_text(f'name: s\nbase: {base}\nparameters:\n  "training.{label}": [1, 2]\n')
    with pytest.raises(ConfigError) as info:
        load_sweep(sweep)
    assert f"training.{label}" in str(info.value)


def test_union_labels_are_still_dropped():
    """A value refused by every alternative of a union is reported under its own key."""
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(mode="local", overrides=["training.bf16=maybe"])
    assert [p.key for p in info.value.problems] == ["training.bf16"]
