"""The validator's rules through GRPOConfigLoader: pass-through TRL fields, bounds and enums,
recommended-range warnings and cross-field rules per world size."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from conftest import machine

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.derive import derive
from grpolab.config.owned import OWNED, REMOVED
from grpolab.config.schema import SECTIONS
from grpolab.config.trl_snapshot import trl_fields


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def apply_fix(error: ConfigError) -> dict:
    """The `set `key: value`` the first problem suggests, as an update."""
    match = re.search(r"set `([\w.]+): (\w+)`", error.problems[0].fix or "")
    assert match, f"no `set key: value` fix in: {error}"
    value = match.group(2)
    return {match.group(1): int(value) if value.isdigit() else value}


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
        ("training.optim", "adamw", "Input should be 'adafactor'"),
        ("training.lr_scheduler_type", "cosin", "Fix: set `training.lr_scheduler_type: cosine`"),
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


def test_every_schedule_argument_transformers_requires_is_asked_for():
    """transformers' schedule functions, read from their signatures: an argument without a default,
    beyond the optimizer and the step counts the Trainer passes, must be in rules.SCHEDULE_NEEDS,
    and a config that names the schedule without it is refused before training."""
    import inspect

    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION

    from grpolab.config.rules import SCHEDULE_NEEDS

    passed = {"optimizer", "num_warmup_steps", "num_training_steps"}
    for kind, function in TYPE_TO_SCHEDULER_FUNCTION.items():
        needed = tuple(
            name
            for name, p in inspect.signature(function).parameters.items()
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and name not in passed
        )
        assert needed == SCHEDULE_NEEDS.get(kind.value, ()), kind.value
        if not needed or kind.value not in SCHEDULE_NEEDS:
            continue
        with pytest.raises(ConfigError) as info:
            GRPOConfigLoader(mode="local", overrides={"training.lr_scheduler_type": kind.value})
        assert all(f"needs `{name}`" in str(info.value) for name in needed)
        kwargs = dict.fromkeys(needed, 5)
        GRPOConfigLoader(
            mode="local", overrides={"training.lr_scheduler_type": kind.value, "training.lr_scheduler_kwargs": kwargs}
        )


def test_a_schedule_argument_missing_beside_others_is_asked_for_by_itself():
    kwargs = {"num_stable_steps": 5}
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(
            mode="local",
            overrides={"training.lr_scheduler_type": "warmup_stable_decay", "training.lr_scheduler_kwargs": kwargs},
        )
    assert "needs `num_decay_steps`" in str(info.value)
    assert "Fix: add `num_decay_steps: " in str(info.value) and "to training.lr_scheduler_kwargs" in str(info.value)
