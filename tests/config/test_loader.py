"""GRPOConfigLoader: layering and precedence, pass-through TRL fields, YAML 1.2 values,
warnings, cross-field rules per world size, validated edits, saves, trl_kwargs and the
derived quantities `grpolab config explain` prints."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import copy_tracked, machine

from grpolab.config import ConfigError, GRPOConfigLoader, preset_path
from grpolab.config.derive import Derived, derive
from grpolab.config.owned import OWNED, REMOVED
from grpolab.config.schema import SECTIONS, GRPOLabConfig
from grpolab.config.trl_snapshot import trl_fields
from grpolab.runtime.resolve import resolve
from grpolab.runtime.trl_args import to_trl_kwargs

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

# README's "Method 2: programmatic updates", verbatim.
METHOD_2 = """\
from configs.grpo_config import GRPOConfigLoader

# Load config
loader = GRPOConfigLoader(mode="cluster")

# Update parameters
loader.update_param("training.learning_rate", 1e-4)
loader.update_param("grpo.beta", 0.05)

# Save as new config
loader.save_config("configs/grpo_cluster_experiment1.yaml")
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def comment_lines(text: str) -> list[str]:
    """Every comment in a YAML text, from its `#` to the end of the line, without save marks."""
    comments = [line[line.index("#") :].rstrip() for line in text.splitlines() if "#" in line]
    comments = [re.sub(r"^# Changed from .*?(  (?=#)|$)", "", c) for c in comments]
    return [c for c in comments if c]


def apply_fix(error: ConfigError) -> dict:
    """The `set `key: value`` the first problem suggests, as an update."""
    match = re.search(r"set `([\w.]+): (\w+)`", error.problems[0].fix or "")
    assert match, f"no `set key: value` fix in: {error}"
    value = match.group(2)
    return {match.group(1): int(value) if value.isdigit() else value}


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


# ----------------------------------------------------------------------------- pass-through
@pytest.mark.parametrize(
    "key, value",
    [
        ("grpo.epsilon_high", 0.28),
        ("grpo.delta", 2.0),
        ("grpo.top_entropy_quantile", 0.2),
        ("grpo.vllm_importance_sampling_correction", False),
        ("training.optim", "adamw_torch_fused"),
        ("training.dataloader_num_workers", 2),
        ("training.adam_beta2", 0.99),
        ("training.lr_scheduler_kwargs", {"min_lr_rate": 0.1}),
    ],
)
def test_pass_through_trl_fields(tmp_path, key, value):
    section, name = key.split(".")
    assert name in trl_fields()[section] and name not in SECTIONS[section].model_fields
    loader = GRPOConfigLoader(mode="cluster", overrides={key: value})
    assert loader.get_param(key) == value
    assert loader.trl_kwargs()[name] == value
    # ... and from a file, with the same result.
    path = write(tmp_path, f"{section}:\n  {name}: {json.dumps(value)}\n")
    assert GRPOConfigLoader(config_path=path).get_param(key) == value


@pytest.mark.parametrize(
    "setting, device, installed, expected",
    [
        ("auto", "cpu", True, False),  # Liger's Triton kernels need a GPU
        ("auto", "cuda", False, False),  # not installed: TRL would fail to import it
        ("auto", "cuda", True, True),
        (False, "cuda", True, False),  # an explicit choice wins
        (True, "cuda", True, True),
    ],
)
def test_liger_auto_resolves_from_the_machine(setting, device, installed, expected):
    loader = GRPOConfigLoader(mode="cluster", overrides={"training.use_liger_kernel": setting})
    assert loader.trl_kwargs(facts=machine(device, liger=installed))["use_liger_kernel"] is expected


def test_presets_pick_the_fast_choices_for_where_they_run():
    local, cluster = GRPOConfigLoader(mode="local").config, GRPOConfigLoader(mode="cluster").config
    assert local.training.gradient_checkpointing is False and cluster.training.gradient_checkpointing is True
    assert local.training.bf16 == cluster.training.bf16 == "auto"
    assert local.training.use_liger_kernel == cluster.training.use_liger_kernel == "auto"
    assert (
        local.cluster.use_vllm is False
        and cluster.cluster.use_vllm == "auto"
        and cluster.cluster.vllm_mode == "colocate"
    )
    assert local.cluster.threads_per_process == cluster.cluster.threads_per_process == "auto"
    cpu = GRPOConfigLoader(mode="local").trl_kwargs(facts=machine("cpu", liger=True))
    assert cpu["bf16"] is False and cpu["use_liger_kernel"] is False and cpu["activation_checkpointing"] is False
    gpu = GRPOConfigLoader(mode="cluster").trl_kwargs(facts=machine("cuda", bf16=True, liger=True))
    assert gpu["bf16"] is True and gpu["use_liger_kernel"] is True and gpu["activation_checkpointing"] is True


def test_threads_per_process_takes_a_positive_number_or_auto():
    assert GRPOConfigLoader(overrides={"cluster.threads_per_process": 3}).config.cluster.threads_per_process == 3
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(overrides={"cluster.threads_per_process": 0})
    assert "cluster.threads_per_process" in str(info.value)


def test_every_pass_through_field_accepts_its_trl_default():
    updates = {}
    for section in ("training", "grpo"):
        for name, spec in trl_fields()[section].items():
            if name in OWNED or name in REMOVED or name in SECTIONS[section].model_fields:
                continue
            updates[f"{section}.{name}"] = spec["default"]
    assert len(updates) > 100
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_params(updates)
    kwargs = loader.trl_kwargs(world_size=4)
    assert {k.split(".")[1] for k in updates} <= set(kwargs)


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("grpo.epsilon_high", "high", "expected float or null"),
        ("training.use_liger_kernel", "yes", "a valid boolean, or 'auto'"),
        ("training.optim", "adamw", "is not one of"),
        ("training.lr_scheduler_type", "cosin", "Did you mean `cosine`?"),
        ("training.epsilon_high", 0.28, "belongs under `grpo:`"),
        ("grpo.adam_beta2", 0.99, "belongs under `training:`"),
        ("grpo.temperature", 0.7, "`generation.temperature`"),
        ("grpo.top_p", 0.9, "`generation.top_p`"),
        ("training.report_to", ["wandb"], "`logging.report_to`"),
        ("training.output_dir", "x", "`output_dir` (top level)"),
        ("grpo.use_vllm", True, "`cluster.use_vllm`"),
        ("grpo.reward_weights", [1.0], "`weight` of each entry in `rewards:`"),
        ("grpo.max_prompt_length", 512, "removed"),
        ("training.warmup_ratio", 0.1, "warmup_steps"),
        ("training.use_liger_loss", True, "use_liger_kernel"),
        ("grpo.epsilon_high", float("inf"), "finite"),
    ],
)
def test_bad_trl_fields(key, value, fragment):
    loader = GRPOConfigLoader(mode="cluster")
    with pytest.raises(ConfigError) as info:
        loader.update_param(key, value)
    assert fragment in str(info.value)
    assert info.value.problems[0].key == key


def test_schema_fields_that_reach_trl_are_real_trl_fields():
    fields = trl_fields()
    kwargs = GRPOConfigLoader(mode="cluster").trl_kwargs(facts=machine("cuda", vllm=True))
    every_trl_field = set(fields["training"]) | set(fields["grpo"])
    assert set(kwargs) <= every_trl_field
    assert set(SECTIONS["training"].model_fields) <= set(fields["training"])
    assert set(SECTIONS["grpo"].model_fields) <= set(fields["grpo"])
    assert set(SECTIONS["generation"].model_fields) <= set(fields["grpo"])


# ----------------------------------------------------------------------------- bounds, enums
@pytest.mark.parametrize(
    "key, value",
    [
        ("training.learning_rate", 0.0),
        ("training.learning_rate", -1e-4),
        ("grpo.beta", -0.01),
        ("grpo.num_generations", 1),
        ("training.per_device_train_batch_size", 0),
        ("training.gradient_accumulation_steps", 0),
        ("generation.max_completion_length", 0),
        ("generation.top_p", 1.5),
        ("cluster.vllm_gpu_memory_utilization", 0.0),
        ("model.lora.r", 0),
        ("grpo.loss_type", "ppo"),
        ("grpo.scale_rewards", "per_group"),
        ("cluster.vllm_mode", "remote"),
        ("cluster.backend", "horovod"),
        ("grpo.importance_sampling_level", "segment"),
        ("training.num_train_epochs", "3"),
        ("training.gradient_checkpointing", 1),
    ],
)
def test_bounds_and_enums(key, value):
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(mode="local", overrides={key: value})
    assert info.value.problems[0].key == key
    assert info.value.problems[0].origin == f"--set {key}"


def test_scale_rewards_bool_means_group_or_none():
    assert GRPOConfigLoader(overrides={"grpo.scale_rewards": True}).get_param("grpo.scale_rewards") == "group"
    assert GRPOConfigLoader(overrides={"grpo.scale_rewards": False}).get_param("grpo.scale_rewards") == "none"


# ----------------------------------------------------------------------------- warnings
@pytest.mark.parametrize(
    "updates, key",
    [
        ({"training.learning_rate": 1e-3}, "training.learning_rate"),
        ({"training.learning_rate": 5e-7}, "training.learning_rate"),
        ({"grpo.beta": 0.5}, "grpo.beta"),
        ({"grpo.beta": 0.0001}, "grpo.beta"),
        ({"grpo.num_generations": 2}, "grpo.num_generations"),
        ({"grpo.num_generations": 32, "grpo.generation_batch_size": 32}, "grpo.num_generations"),
    ],
)
def test_outside_recommended_ranges_is_a_warning(updates, key):
    loader = GRPOConfigLoader(mode="local")
    loader.update_params(updates)  # no error
    assert [w.key for w in loader.warnings] == [key]
    assert "recommended range" in loader.warnings[0].message


@pytest.mark.parametrize(
    "updates",
    [
        {"training.learning_rate": 1e-6},
        {"training.learning_rate": 5e-4},
        {"grpo.beta": 0.0},  # exactly 0 disables KL: fine
        {"grpo.beta": 0.001},
        {"grpo.beta": 0.1},
        {"grpo.num_generations": 4},
    ],
)
def test_inside_recommended_ranges_no_warning(updates):
    loader = GRPOConfigLoader(mode="local")
    loader.update_params(updates)
    assert loader.warnings == []


def test_warning_clears_after_a_good_update():
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_param("training.learning_rate", 1e-2)
    assert len(loader.warnings) == 1
    loader.update_param("training.learning_rate", 1e-4)
    assert loader.warnings == []


# ----------------------------------------------------------------------------- cross-field rules
@pytest.mark.parametrize("world_size", [1, 2, 4, 8])
def test_cluster_preset_valid_for_world_sizes(world_size):
    loader = GRPOConfigLoader(mode="cluster", world_size=world_size)
    assert loader.target_world_size() == world_size
    assert loader.warnings == []
    kwargs = loader.trl_kwargs(world_size=world_size)
    assert "generation_batch_size" not in kwargs and "steps_per_generation" not in kwargs
    d = derive(loader.config, world_size)
    assert d.effective_batch_size == 8 * 1 * world_size
    assert d.generation_batch_size % 8 == 0  # whole groups of num_generations


@pytest.mark.parametrize("world_size", [1, 2, 4, 8])
def test_local_preset_valid_for_world_sizes(world_size):
    GRPOConfigLoader(mode="local", world_size=world_size).trl_kwargs(world_size=world_size)


def test_generation_batch_not_divisible_by_num_generations():
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(mode="local", overrides={"grpo.generation_batch_size": 12})
    problem = info.value.problems[0]
    assert problem.key == "grpo.generation_batch_size"
    assert "12 must be divisible by grpo.num_generations = 8" in problem.message
    assert apply_fix(info.value) == {"grpo.generation_batch_size": 16}


def test_generation_batch_not_divisible_by_batch_times_world_size():
    loader = GRPOConfigLoader(mode="local")
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(mode="local", world_size=3)
    assert "per_device_train_batch_size x world size = 1 x 3 = 3" in str(info.value)
    assert "(world size 3)" in str(info.value)
    fix = apply_fix(info.value)
    assert fix == {"grpo.generation_batch_size": 24}
    GRPOConfigLoader(mode="local", world_size=3, overrides=fix)
    with pytest.raises(ConfigError, match="world size = 1 x 3"):
        loader.trl_kwargs(world_size=3)


def test_generation_batch_and_steps_per_generation_exclusive():
    with pytest.raises(ConfigError, match="cannot both be set") as info:
        GRPOConfigLoader(mode="local", overrides={"grpo.steps_per_generation": 2, "grpo.generation_batch_size": 16})
    assert "`grpo.steps_per_generation: null`" in info.value.problems[0].fix  # 16 alone makes whole groups
    loader = GRPOConfigLoader(
        mode="local", overrides={"grpo.steps_per_generation": 8, "grpo.generation_batch_size": "auto"}
    )
    assert loader.trl_kwargs()["steps_per_generation"] == 8
    assert "generation_batch_size" not in loader.trl_kwargs()


@pytest.mark.parametrize("world_size, fix", [(1, 2), (2, None), (4, None)])
def test_auto_generation_batch_names_gradient_accumulation_fix(world_size, fix):
    """cluster, num_generations 16: 8 x W x 1 completions per round needs W >= 2."""
    args = dict(mode="cluster", world_size=world_size, overrides={"grpo.num_generations": 16})
    if fix is None:
        GRPOConfigLoader(**args)
        return
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(**args)
    assert info.value.problems[0].key == "training.gradient_accumulation_steps"
    assert "8 x 1 x 1 = 8 completions" in str(info.value)
    assert apply_fix(info.value) == {"training.gradient_accumulation_steps": fix}
    GRPOConfigLoader(
        mode="cluster", world_size=world_size, overrides={"grpo.num_generations": 16, **apply_fix(info.value)}
    )


def test_steps_per_generation_fix_is_valid():
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(mode="cluster", overrides={"grpo.steps_per_generation": 3, "grpo.num_generations": 16})
    assert info.value.problems[0].key == "grpo.steps_per_generation"
    fix = apply_fix(info.value)
    assert fix["grpo.steps_per_generation"] in (2, 4)  # the nearest valid values
    GRPOConfigLoader(mode="cluster", overrides={"grpo.num_generations": 16, **fix})


def test_cluster_auto_processes_warns_about_other_world_sizes():
    """A fixed generation_batch_size of 8 fits 1 GPU of 8 completions, but not 2, 4 or 8 GPUs."""
    loader = GRPOConfigLoader(mode="cluster", overrides={"grpo.generation_batch_size": 8})
    assert [w.message.split(":")[0] for w in loader.warnings] == [
        "would fail on 2 processes",
        "would fail on 4 processes",
        "would fail on 8 processes",
    ]
    with pytest.raises(ConfigError):
        GRPOConfigLoader(mode="cluster", world_size=2, overrides={"grpo.generation_batch_size": 8})


def test_target_world_size_from_cluster_section():
    loader = GRPOConfigLoader(mode="cluster", overrides={"cluster.num_processes": 2, "cluster.num_machines": 2})
    assert loader.target_world_size() == 4
    assert GRPOConfigLoader(mode="cluster", world_size=8).target_world_size() == 8
    assert GRPOConfigLoader(mode="local").target_world_size() == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_world_size(bad):
    with pytest.raises(ConfigError, match="world_size"):
        GRPOConfigLoader(mode="cluster", world_size=bad)
    with pytest.raises(ConfigError, match="world_size"):
        GRPOConfigLoader(mode="cluster").trl_kwargs(world_size=bad)


def test_sync_ref_model_needs_beta():
    with pytest.raises(ConfigError, match="sync_ref_model"):
        GRPOConfigLoader(overrides={"grpo.beta": 0.0, "grpo.sync_ref_model": True})
    GRPOConfigLoader(overrides={"grpo.beta": 0.04, "grpo.sync_ref_model": True})


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


# ----------------------------------------------------------------------------- trl_kwargs
def test_trl_kwargs_generation_batch_auto_and_fixed():
    cluster = GRPOConfigLoader(mode="cluster").trl_kwargs(world_size=4)
    assert "generation_batch_size" not in cluster and "steps_per_generation" not in cluster
    local = GRPOConfigLoader(mode="local").trl_kwargs()
    assert local["generation_batch_size"] == 8 and "steps_per_generation" not in local


@pytest.mark.parametrize("gbs", ["auto", 16, 32])
@pytest.mark.parametrize("steps", [None, 2])
def test_trl_kwargs_never_both(gbs, steps):
    overrides = {"grpo.generation_batch_size": gbs, "grpo.steps_per_generation": steps}
    try:
        kwargs = GRPOConfigLoader(mode="cluster", overrides=overrides).trl_kwargs()
    except ConfigError as exc:
        assert gbs != "auto" and steps is not None and "cannot both be set" in str(exc)
        return
    assert not ("generation_batch_size" in kwargs and "steps_per_generation" in kwargs)
    assert ("generation_batch_size" in kwargs) == (gbs != "auto")
    assert ("steps_per_generation" in kwargs) == (steps is not None)


def test_trl_kwargs_mapping():
    loader = GRPOConfigLoader(
        mode="cluster",
        overrides={
            "rewards": [{"name": "numeric_match", "weight": 1.0}, {"name": "format", "weight": 0.5}],
            "generation.temperature": 0.7,
            "generation.max_completion_length": 128,
            "logging.report_to": ["none"],
        },
    )
    kwargs = loader.trl_kwargs()
    assert kwargs["reward_weights"] == [1.0, 0.5]
    assert kwargs["temperature"] == 0.7 and kwargs["max_completion_length"] == 128
    assert kwargs["report_to"] == "none"
    assert kwargs["learning_rate"] == 3e-5 and kwargs["beta"] == 0.01
    assert kwargs["output_dir"] == "./grpo_results_cluster"
    assert kwargs["use_vllm"] is False and "vllm_mode" not in kwargs


@pytest.mark.parametrize(
    "bf16, device, supported, expect_bf16, expect_cpu",
    [
        ("auto", "cpu", False, False, True),
        ("auto", "cpu", True, True, True),  # a CPU with AVX512-BF16/AMX: autocast is faster there
        ("auto", "cuda", True, True, False),
        ("auto", "cuda", False, False, False),
        (False, "cuda", True, False, False),
        (True, "cuda", True, True, False),
    ],
)
def test_trl_kwargs_precision_and_device(bf16, device, supported, expect_bf16, expect_cpu):
    loader = GRPOConfigLoader(mode="cluster", overrides={"training.bf16": bf16})
    kwargs = loader.trl_kwargs(facts=machine(device, bf16=supported))
    assert kwargs["bf16"] is expect_bf16
    assert kwargs["use_cpu"] is expect_cpu
    resolved = resolve(loader.config, machine(device, bf16=supported))
    assert to_trl_kwargs(loader.config, resolved) == kwargs  # the loader adds nothing of its own


def test_trl_kwargs_use_cpu_pass_through_forces_cpu():
    kwargs = GRPOConfigLoader(mode="cluster", overrides={"training.use_cpu": True}).trl_kwargs(
        facts=machine("cuda", bf16=True)
    )
    assert kwargs["use_cpu"] is True


def test_trl_kwargs_vllm():
    colocate = GRPOConfigLoader(mode="cluster").trl_kwargs(facts=machine("cuda", vllm=True))
    assert colocate["use_vllm"] is True and colocate["vllm_mode"] == "colocate"
    assert colocate["vllm_gpu_memory_utilization"] == 0.3 and "vllm_server_host" not in colocate
    server = GRPOConfigLoader(
        mode="cluster", overrides={"cluster.vllm_mode": "server", "cluster.vllm_server_port": 8001}
    )
    kwargs = server.trl_kwargs(facts=machine("cuda", vllm=True))
    assert (kwargs["vllm_mode"], kwargs["vllm_server_host"], kwargs["vllm_server_port"]) == ("server", "0.0.0.0", 8001)


def test_config_code_never_imports_trl_torch_transformers():
    code = textwrap.dedent(
        """
        import sys
        from grpolab.config import GRPOConfigLoader
        from grpolab.config.derive import derive
        loader = GRPOConfigLoader(mode="cluster", world_size=8)
        loader.update_param("grpo.beta", 0.05)
        from grpolab.runtime.hardware import GPU, HardwareFacts

        loader.trl_kwargs(world_size=8, facts=HardwareFacts(gpus=(GPU("g", (9, 0)),) * 8, installed={"vllm"}))
        derive(loader.config, 8, 1000)
        loader.render()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("trl", "torch", "transformers"))
        print(heavy)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- derived quantities
def test_derived_quantities_cluster():
    cfg = GRPOConfigLoader(mode="cluster", world_size=4).config
    d = derive(cfg, 4, dataset_size=1000)
    assert d == Derived(
        world_size=4,
        effective_batch_size=32,
        generation_batch_size=32,
        unique_prompts_per_round=4,
        steps_per_generation=1,
        optimizer_steps_per_round=1.0,
        on_policy=True,
        kl_tracked=True,
        reference_model=True,
        reference_model_why="reference model loaded: a frozen copy of the policy",
        completion_tokens_per_round_max=32 * 256,
        generation_rounds_per_epoch=250,
        optimizer_steps_per_epoch=250,
        total_optimizer_steps=250,
    )


def test_derived_quantities_local_and_overrides():
    cfg = GRPOConfigLoader(mode="local").config
    d = derive(cfg, 1, dataset_size=100)
    assert (d.generation_batch_size, d.unique_prompts_per_round, d.steps_per_generation) == (8, 1, 8)
    assert d.optimizer_steps_per_round == 8.0 and d.on_policy is False
    assert (d.generation_rounds_per_epoch, d.optimizer_steps_per_epoch, d.total_optimizer_steps) == (100, 800, 800)
    assert "generation_rounds_per_epoch" not in derive(cfg, 1).to_dict()

    cfg = GRPOConfigLoader(
        mode="cluster",
        overrides={
            "grpo.beta": 0.0,
            "training.max_steps": 7,
            "training.gradient_accumulation_steps": 4,
            "grpo.num_iterations": 2,
        },
    ).config
    d = derive(cfg, 2, dataset_size=64)
    assert d.effective_batch_size == 8 * 4 * 2
    assert d.generation_batch_size == 64 and d.steps_per_generation == 4
    assert d.optimizer_steps_per_round == 2.0 and d.on_policy is False
    assert d.kl_tracked is False and d.reference_model is False
    assert d.total_optimizer_steps == 7


# ----------------------------------------------------------------------------- save_config
def test_seed_method_2_runs_verbatim(tmp_path):
    """README's Method 2 snippet, from a copy of the repo root, saves a valid file that keeps the
    preset's comments; the real configs/ folder is never written."""
    real_before = sorted(p.name for p in (REPO / "configs").iterdir())
    root = tmp_path / "repo"
    copy_tracked("configs", root)  # the shipped files only, never the user's own configs
    shutil.copytree(REPO / "grpolab", root / "grpolab", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = "import grpolab, configs; print(grpolab.__file__); print(configs.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", check], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert where.stdout.splitlines() == [
        str(root / "grpolab" / "__init__.py"),
        str(root / "configs" / "__init__.py"),
    ], where
    proc = subprocess.run(
        [sys.executable, "-c", METHOD_2], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr

    saved = root / "configs" / "grpo_cluster_experiment1.yaml"
    text = saved.read_text()
    assert "  learning_rate: 1.0e-4  # Changed from 3.0e-5  # peak learning rate (TRL default 1e-6)\n" in text
    assert "  beta: 0.05  # Changed from 0.01  # KL penalty coefficient; 0 = no reference model, no KL\n" in text
    assert "# Training Hyperparameters\n" in text and "# GRPO Specific Parameters\n" in text
    preset = CLUSTER.read_text()
    assert comment_lines(text) == comment_lines(preset)
    assert text.splitlines()[:3] == preset.splitlines()[:3]
    assert len(text.splitlines()) == len(preset.splitlines())  # two lines edited in place, nothing else

    validate = subprocess.run(
        [sys.executable, "-m", "grpolab.cli.main", "config", "validate", "configs/grpo_cluster_experiment1.yaml"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validate.returncode == 0, validate.stderr
    assert "ok (mode cluster" in validate.stdout
    loaded = GRPOConfigLoader(config_path=saved)
    assert loaded.get_param("training.learning_rate") == 1e-4 and loaded.get_param("grpo.beta") == 0.05

    again = subprocess.run(
        [sys.executable, "-c", METHOD_2], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    assert saved.read_text() == text
    assert sorted(p.name for p in (REPO / "configs").iterdir()) == real_before


def test_save_refuses_to_overwrite_and_leaves_file_identical(tmp_path):
    target = tmp_path / "exp.yaml"
    original = b"# mine\ngrpo:\n  beta: 0.02  # keep me\n"
    target.write_bytes(original)
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_param("grpo.beta", 0.05)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        loader.save_config(target)
    assert target.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]  # no temp file left
    own = GRPOConfigLoader(config_path=target)  # saving over its own source needs overwrite too
    own.update_param("grpo.beta", 0.03)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        own.save_config(target)
    assert target.read_bytes() == original
    loader.save_config(target, overwrite=True)
    assert GRPOConfigLoader(config_path=target).get_param("grpo.beta") == 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


def test_save_to_a_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        GRPOConfigLoader().save_config(tmp_path)


def test_save_partial_file_keeps_it_partial(tmp_path):
    path = write(tmp_path, "# Experiment 1: Conservative Training\n" + EXPERIMENT_1 + "\n# Outcome: stable\n")
    loader = GRPOConfigLoader(config_path=path)
    loader.update_params({"grpo.beta": 0.02, "generation.temperature": 0.7, "grpo.epsilon_high": 0.28})
    out = loader.save_config(tmp_path / "out.yaml")
    text = out.read_text()
    assert text == (
        "# Experiment 1: Conservative Training\n"
        "training:\n"
        "  learning_rate: 1.0e-5  # Low LR\n"
        "grpo:\n"
        "  beta: 0.02  # Changed from 0.05  # High KL penalty\n"
        "  epsilon_high: 0.28  # Changed from null\n"
        "generation:\n"
        "  temperature: 0.7  # Changed from 1.0\n"
        "\n"
        "# Outcome: stable\n"
    )
    assert GRPOConfigLoader(config_path=out).to_dict() == loader.to_dict()


def test_save_new_key_keeps_the_next_sections_header_below(tmp_path):
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_params({"grpo.epsilon_high": 0.28, "training.weight_decay": 0.1})
    text = loader.save_config(tmp_path / "x.yaml").read_text()
    assert (
        "  scale_rewards: group  # advantage scaling: group, batch or none\n"
        "  epsilon_high: 0.28  # Changed from null\n"
        "\n"
        "# Sampling of completions\n"
        "generation:\n"
    ) in text
    assert "  weight_decay: 0.1  # Changed from 0.0\n\n# GRPO Specific Parameters\ngrpo:\n" in text


def test_save_mapping_update_marks_each_changed_key(tmp_path):
    loader = GRPOConfigLoader(mode="local")
    loader.update_param("model.lora", {"enabled": True, "r": 8})
    text = loader.save_config(tmp_path / "x.yaml").read_text()
    assert "    enabled: true  # Changed from false  # train a LoRA adapter (peft) instead of all weights\n" in text
    assert "    r: 8  # Changed from 16  # adapter rank\n" in text
    assert "    alpha: 32  # scaling" in text
    assert "\n\n# Data\ndata:\n" in text
    assert GRPOConfigLoader(config_path=tmp_path / "x.yaml").to_dict() == loader.to_dict()


def test_save_list_replacement_keeps_following_header(tmp_path):
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_param("rewards", [{"name": "numeric_match", "weight": 1.0}, {"name": "format", "weight": 0.2}])
    text = loader.save_config(tmp_path / "x.yaml").read_text()
    assert "\n\n# Training Hyperparameters\ntraining:\n" in text
    assert GRPOConfigLoader(config_path=tmp_path / "x.yaml").get_param("rewards[1].weight") == 0.2


def test_save_with_set_and_flags(tmp_path):
    loader = GRPOConfigLoader(mode="cluster", overrides=["grpo.beta=0.04"], flags={"model.name_or_path": "gpt2"})
    text = loader.save_config(tmp_path / "x.yaml").read_text()
    assert "beta: 0.04  # Changed from 0.01" in text
    assert "name_or_path: gpt2  # Changed from null" in text
    assert GRPOConfigLoader(config_path=tmp_path / "x.yaml").to_dict() == loader.to_dict()


def test_value_set_back_is_not_marked(tmp_path):
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_param("grpo.beta", 0.05)
    loader.update_param("grpo.beta", 0.01)
    assert loader.render() == CLUSTER.read_text()


def test_saved_file_is_readable_by_others(tmp_path):
    path = GRPOConfigLoader().save_config(tmp_path / "x.yaml")
    mode = path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_trust_remote_code_reaches_trl_from_the_model_section_only():
    from grpolab.config import ConfigError, GRPOConfigLoader

    loader = GRPOConfigLoader(overrides=["model.trust_remote_code=true"])
    assert loader.trl_kwargs(world_size=1)["trust_remote_code"] is True
    assert GRPOConfigLoader().trl_kwargs(world_size=1)["trust_remote_code"] is False
    with pytest.raises(ConfigError) as err:
        GRPOConfigLoader(overrides=["grpo.trust_remote_code=true"])
    assert "is set through `model.trust_remote_code`" in str(err.value)


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
