"""GRPOConfigLoader: the presets, layering and precedence, YAML 1.2 values, validated edits
(update_param) and reading values back (get_param, to_dict)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader, preset_path
from grpolab.config.derive import derive
from grpolab.config.schema import GRPOLabConfig

REPO = Path(__file__).resolve().parents[2]

CLUSTER = REPO / "configs" / "grpo_cluster.yaml"

LOCAL = REPO / "configs" / "grpo_local.yaml"

# README's example experiments, verbatim.
EXPERIMENT_1 = """\
training:
  learning_rate: 1.0e-5  # Low LR
grpo:
  beta: 0.05  # High KL penalty
"""

EXPERIMENT_3 = """\
training:
  per_device_train_batch_size: 16
  gradient_accumulation_steps: 4
  # Effective batch size: 64
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ----------------------------------------------------------------------------- presets
def test_presets_are_the_default_files():
    """The presets are package data; the documented configs/ paths are links to the same files."""
    assert preset_path("local") == REPO / "grpolab" / "presets" / "grpo_local.yaml"
    assert preset_path("local") == LOCAL.resolve() and preset_path("cluster") == CLUSTER.resolve()
    assert GRPOConfigLoader().mode == "local"
    assert GRPOConfigLoader().preset_path == LOCAL.resolve()
    assert GRPOConfigLoader(mode="cluster").preset_path == CLUSTER.resolve()


def test_presets_load_without_warnings():
    for mode in ("local", "cluster"):
        assert GRPOConfigLoader(mode=mode).warnings == []


def test_preset_values_reach_the_config():
    local = GRPOConfigLoader(mode="local").config
    assert (local.training.per_device_train_batch_size, local.training.learning_rate) == (1, 5e-5)
    assert (local.grpo.generation_batch_size, local.grpo.num_generations, local.grpo.beta) == (8, 8, 0.01)
    cluster = GRPOConfigLoader(mode="cluster").config
    assert (cluster.training.per_device_train_batch_size, cluster.training.learning_rate) == (8, 3e-5)
    assert cluster.grpo.generation_batch_size == "auto"
    assert cluster.output_dir == "./grpo_results_cluster"


# ----------------------------------------------------------------------------- precedence
def test_schema_defaults_below_preset():
    loader = GRPOConfigLoader(mode="local")
    assert GRPOLabConfig().training.learning_rate == 1e-6  # schema default (TRL's)
    assert loader.get_param("training.learning_rate") == 5e-5  # the preset wins
    assert loader.get_param("training.weight_decay") == 0.0  # not in the preset: the default
    assert loader.origin_of("training.learning_rate").startswith("preset grpo_local.yaml:")
    assert loader.origin_of("training.weight_decay") == "default"


def test_partial_file_layers_over_its_modes_preset(tmp_path):
    path = write(tmp_path, EXPERIMENT_1)
    loader = GRPOConfigLoader(config_path=path)
    assert loader.mode == "local"
    assert loader.get_param("training.learning_rate") == 1e-5
    assert loader.get_param("grpo.beta") == 0.05
    assert loader.get_param("grpo.generation_batch_size") == 8  # the rest: the local preset
    assert loader.get_param("generation.max_completion_length") == 64
    assert loader.origin_of("grpo.beta") == f"{path}:4"
    assert loader.source_path == path and loader.config_path == path

    cluster = GRPOConfigLoader(config_path=write(tmp_path, "mode: cluster\n" + EXPERIMENT_1, "c2.yaml"))
    assert cluster.mode == "cluster"
    assert cluster.get_param("training.learning_rate") == 1e-5
    assert cluster.get_param("training.per_device_train_batch_size") == 8  # the cluster preset
    assert cluster.get_param("grpo.generation_batch_size") == "auto"


def test_seed_experiment_3_large_batch(tmp_path):
    loader = GRPOConfigLoader(mode="cluster", config_path=write(tmp_path, EXPERIMENT_3))
    assert derive(loader.config, 1).effective_batch_size == 64


def test_mode_argument_beats_the_files_mode(tmp_path):
    path = write(tmp_path, "mode: local\n" + EXPERIMENT_1)
    loader = GRPOConfigLoader(mode="cluster", config_path=path)
    assert loader.mode == "cluster" and loader.preset_path == CLUSTER.resolve()
    assert loader.get_param("training.per_device_train_batch_size") == 8
    assert loader.get_param("training.learning_rate") == 1e-5
    assert "mode: cluster  # Changed from local" in loader.render()


def test_set_overrides_beat_the_file_and_flags_beat_set(tmp_path):
    path = write(tmp_path, EXPERIMENT_1)
    with_set = GRPOConfigLoader(config_path=path, overrides=["training.learning_rate=2e-4", "grpo.beta=0.02"])
    assert with_set.get_param("training.learning_rate") == 2e-4
    assert with_set.get_param("grpo.beta") == 0.02
    assert with_set.origin_of("grpo.beta") == "--set grpo.beta"

    with_flags = GRPOConfigLoader(
        config_path=path,
        overrides=["training.learning_rate=2e-4", "model.name_or_path=distilgpt2"],
        flags={"model.name_or_path": "gpt2"},
    )
    assert with_flags.get_param("model.name_or_path") == "gpt2"
    assert with_flags.get_param("training.learning_rate") == 2e-4
    assert with_flags.origin_of("model.name_or_path") == "flag for model.name_or_path"
    assert with_flags.overrides == {"training.learning_rate": 2e-4, "model.name_or_path": "gpt2"}


def test_overrides_as_a_dict():
    loader = GRPOConfigLoader(overrides={"grpo.beta": 0.0, "rewards[0].weight": 2.0})
    assert loader.get_param("grpo.beta") == 0.0
    assert loader.get_param("rewards[0].weight") == 2.0


def test_full_precedence_chain(tmp_path):
    """defaults < preset < file < --set < flags, on one key each step shadows."""
    path = write(tmp_path, "training:\n  seed: 1\n  logging_steps: 2\n  save_steps: 3\n")
    loader = GRPOConfigLoader(
        config_path=path,
        overrides=["training.logging_steps=20", "training.save_steps=30"],
        flags={"training.save_steps": 300},
    )
    t = loader.config.training
    assert t.weight_decay == 0.0  # default
    assert t.gradient_checkpointing is False  # preset
    assert t.seed == 1  # file
    assert t.logging_steps == 20  # --set
    assert t.save_steps == 300  # flag


# ----------------------------------------------------------------------------- YAML 1.2
def test_yaml_12_floats(tmp_path):
    path = write(tmp_path, "training:\n  learning_rate: 1e-4\n  weight_decay: 1E-2\ngrpo:\n  beta: 5e-3\n")
    loader = GRPOConfigLoader(config_path=path)
    assert loader.get_param("training.learning_rate") == 1e-4
    assert isinstance(loader.get_param("training.learning_rate"), float)
    assert loader.get_param("training.weight_decay") == 0.01
    assert GRPOConfigLoader(overrides=["training.learning_rate=3e-5"]).get_param("training.learning_rate") == 3e-5


def test_yaml_12_yes_no_are_strings(tmp_path):
    path = write(tmp_path, "model:\n  revision: no\n")
    assert GRPOConfigLoader(config_path=path).get_param("model.revision") == "no"


# ----------------------------------------------------------------------------- update_param
def test_update_param_changes_and_records():
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_param("training.learning_rate", 1e-4)
    loader.update_param("grpo.beta", 0.05)
    assert loader.get_param("training.learning_rate") == 1e-4
    assert loader.config.grpo.beta == 0.05
    assert loader.to_dict()["grpo"]["beta"] == 0.05
    assert loader.overrides == {"training.learning_rate": 1e-4, "grpo.beta": 0.05}
    assert loader.origin_of("grpo.beta") == "update_param"


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("training.learnin_rate", 1e-4, "Did you mean `learning_rate`?"),
        ("gpro.beta", 0.05, "Did you mean `grpo`?"),
        ("grpo.num_generations", 3, "not divisible by grpo.num_generations = 3"),
        ("training.learning_rate", "1e-4", "valid number"),
        ("training.learning_rate", float("nan"), "NaN"),
        ("grpo.beta", -1.0, "greater than or equal to 0"),
        ("rewards", [], "at least 1"),
        ("rewards[0].name", "nope", "unknown reward `nope`"),
        ("model.lora.rank", 8, "Allowed: enabled, r, alpha"),
        ("training..x", 1, "not a dotted key"),
    ],
)
def test_invalid_update_raises_and_changes_nothing(key, value, fragment):
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_param("grpo.beta", 0.05)
    before = (loader.to_dict(), loader.overrides, list(loader.warnings), loader.render(), loader.config)
    with pytest.raises(ConfigError) as info:
        loader.update_param(key, value)
    assert fragment in str(info.value)
    assert (loader.to_dict(), loader.overrides, list(loader.warnings), loader.render(), loader.config) == before
    loader.update_param("grpo.beta", 0.02)  # still usable
    assert loader.get_param("grpo.beta") == 0.02


def test_update_params_validates_together_and_rolls_back_all():
    loader = GRPOConfigLoader(mode="cluster")
    with pytest.raises(ConfigError):
        loader.update_param("grpo.num_generations", 16)  # alone: 8 completions per round
    loader.update_params({"grpo.num_generations": 16, "training.gradient_accumulation_steps": 2})
    assert loader.get_param("grpo.num_generations") == 16
    before = loader.to_dict()
    with pytest.raises(ConfigError):
        loader.update_params({"grpo.beta": 0.02, "grpo.num_generations": 3})
    assert loader.to_dict() == before  # the good half of a bad batch is not kept either


def test_update_mapping_merges_like_a_layer():
    loader = GRPOConfigLoader(mode="local")
    loader.update_param("model.lora", {"enabled": True})
    assert loader.get_param("model.lora") == {
        "enabled": True,
        "r": 16,
        "alpha": 32,
        "dropout": 0.05,
        "target_modules": "all-linear",
    }


# ----------------------------------------------------------------------------- get_param, to_dict
def test_get_param():
    loader = GRPOConfigLoader(mode="cluster")
    assert loader.get_param("rewards[0].name") == "numeric_match"
    assert loader.get_param("generation")["max_completion_length"] == 256
    assert loader.get_param("mode") == "cluster"
    loader.get_param("generation")["temperature"] = 99.0  # a copy
    assert loader.get_param("generation.temperature") == 1.0
    with pytest.raises(ConfigError, match="Did you mean `training.learning_rate`"):
        loader.get_param("training.learnin_rate")
    with pytest.raises(ConfigError):
        loader.get_param("rewards[5].name")


def test_to_dict_is_complete_plain_and_reloadable(tmp_path):
    loader = GRPOConfigLoader(mode="cluster", overrides={"grpo.epsilon_high": 0.28})
    data = loader.to_dict()
    assert set(data) == set(GRPOLabConfig.model_fields)
    assert data["training"]["weight_decay"] == 0.0  # defaults included
    assert data["grpo"]["epsilon_high"] == 0.28  # pass-through included
    assert json.loads(json.dumps(data)) == data
    from grpolab.config.yaml_io import dump_yaml

    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(dump_yaml(data))
    assert GRPOConfigLoader(config_path=resolved).to_dict() == data
