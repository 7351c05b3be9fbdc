"""Dotted keys: flatten and diff, from_dict and with_overrides, --set parsing, the closed schema's
key list."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ----------------------------------------------------------------------------- keys, from_dict, with_overrides
def test_flatten_and_diff_name_list_items_by_index():
    from grpolab.config.keys import MISSING, diff, flatten

    a = {"training": {"learning_rate": 1e-4}, "rewards": [{"name": "format", "weight": 1.0}], "env": {}}
    b = {"training": {"learning_rate": 1e-4}, "rewards": [{"name": "format", "weight": 0.5}], "env": {"A": "1"}}
    assert flatten(a) == {"training.learning_rate": 1e-4, "rewards[0].name": "format", "rewards[0].weight": 1.0}
    assert flatten({"logging": {"report_to": ["wandb"]}}) == {"logging.report_to": ["wandb"]}
    assert diff(a, b) == [("rewards[0].weight", 1.0, 0.5), ("env.A", MISSING, "1")]
    assert diff({"x": 1}, {"x": 1.0}) == [("x", 1, 1.0)]  # a different type is a different value


def test_config_diff_names_reward_items(tmp_path, capsys):
    from grpolab.cli.main import main

    a = write(tmp_path, "rewards:\n  - name: format\n    weight: 1.0\n", "a.yaml")
    b = write(tmp_path, "rewards:\n  - name: format\n    weight: 0.5\n", "b.yaml")
    assert main(["config", "diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "rewards[0].weight  1.0  ->  0.5" in out and "rewards[0].name" not in out


def test_from_dict_layers_like_a_file_and_with_overrides_adds_set(tmp_path):
    data = {"mode": "cluster", "grpo": {"beta": 0.05}}
    loader = GRPOConfigLoader.from_dict(data)
    assert loader.mode == "cluster" and loader.config_path is None
    assert loader.get_param("grpo.beta") == 0.05 and loader.get_param("training.learning_rate") == 3e-5
    assert data == {"mode": "cluster", "grpo": {"beta": 0.05}}  # not modified
    more = loader.with_overrides(["training.learning_rate=1e-4"])
    assert more.get_param("training.learning_rate") == 1e-4 and more.origin_of("training.learning_rate") == (
        "--set training.learning_rate"
    )
    assert loader.get_param("training.learning_rate") == 3e-5  # the original is unchanged
    with pytest.raises(ConfigError, match="grpo.num_generations"):
        loader.with_overrides({"grpo.num_generations": 1})
    with pytest.raises(ConfigError, match="unknown key"):
        GRPOConfigLoader.from_dict({"grpo": {"bta": 1}})


def test_parse_assignments_reads_yaml_values():
    from grpolab.config.layers import parse_assignments

    assert parse_assignments(["a.b=1e-4", "c=[x, y]", "d=", "e=a=b"]) == [
        ("a.b", 1e-4),
        ("c", ["x", "y"]),
        ("d", ""),
        ("e", "a=b"),
    ]
    assert parse_assignments({"a": 1}) == [("a", 1)] and parse_assignments(None) == []
    with pytest.raises(ConfigError, match="not of the form KEY=VALUE"):
        parse_assignments(["novalue"])


def test_unknown_keys_come_from_the_closed_schema():
    """training:/grpo: are closed over TRL's field list: pydantic itself rejects any other key."""
    from pydantic import ValidationError

    from grpolab.config.schema import closed_model

    model = closed_model()
    model.model_validate({"grpo": {"epsilon_high": 0.28}, "training": {"optim": "adamw_torch"}})
    with pytest.raises(ValidationError) as info:
        model.model_validate({"training": {"lerning_rate": 1.0, "temperature": 1.0}, "grpo": {"optim": "x"}})
    assert {(e["type"], e["loc"]) for e in info.value.errors()} == {
        ("extra_forbidden", ("training", "lerning_rate")),
        ("extra_forbidden", ("training", "temperature")),
        ("extra_forbidden", ("grpo", "optim")),
    }


def test_list_items_have_their_own_lines_and_a_set_list_replaces_them(tmp_path):
    path = write(
        tmp_path, "rewards:\n  - name: format\n  - name: numeric_match\n    patern: x\nmodel:\n  lora:\n    rnk: 2\n"
    )
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(config_path=path)
    text = str(info.value)
    assert f"{path}:4: rewards[1].patern: unknown key" in text and f"{path}:7: model.lora.rnk" in text
    ok = write(tmp_path, "rewards:\n  - name: format\n  - name: numeric_match\n    weight: 0.5\n", "ok.yaml")
    loader = GRPOConfigLoader(config_path=ok)
    assert loader.origin_of("rewards[1].weight") == f"{ok}:4" and loader.origin_of("rewards") == f"{ok}:1"
    loader = GRPOConfigLoader(config_path=ok, overrides=["rewards=[{name: format}]"])
    assert loader.origin_of("rewards[0].name") == "--set rewards" and loader.origin_of("rewards[1].weight") == (
        "--set rewards"
    )
