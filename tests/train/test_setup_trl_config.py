"""The loader's TRL keyword arguments build the same trl.GRPOConfig, field by field, as one
written by hand from each preset's YAML values, on a CPU without native bf16 (use_cpu=True,
bf16=False): the machine is named, since trl_kwargs() otherwise decides for the probed one."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT, machine
from trl import GRPOConfig

from grpolab.config import GRPOConfigLoader

# Fields that may carry a timestamp or a machine path (none differ today; kept out on purpose).
IGNORED = {"logging_dir"}


def _by_hand_local() -> GRPOConfig:
    """configs/grpo_local.yaml, value by value."""
    return GRPOConfig(
        output_dir="./grpo_results_local",
        num_train_epochs=1,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=1,
        learning_rate=5.0e-5,
        warmup_steps=0,
        max_steps=-1,
        logging_steps=1,
        save_steps=50,
        seed=42,
        activation_checkpointing=False,  # YAML gradient_checkpointing (renamed in transformers 5)
        bf16=False,  # bf16: auto -> fp32 on a CPU without native bf16
        use_cpu=True,
        generation_batch_size=8,
        num_generations=8,
        beta=0.01,
        loss_type="dapo",
        scale_rewards="group",
        max_completion_length=64,
        temperature=1.0,
        report_to=["wandb"],
        reward_weights=[1.0],
        use_vllm=False,
    )


def _by_hand_cluster() -> GRPOConfig:
    """configs/grpo_cluster.yaml, value by value (generation_batch_size: auto is left to TRL)."""
    return GRPOConfig(
        output_dir="./grpo_results_cluster",
        num_train_epochs=1,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        learning_rate=3.0e-5,
        warmup_steps=0.05,
        max_steps=-1,
        logging_steps=5,
        save_steps=200,
        seed=42,
        activation_checkpointing=True,  # YAML gradient_checkpointing (renamed in transformers 5)
        bf16=False,
        use_cpu=True,
        num_generations=8,
        beta=0.01,
        loss_type="dapo",
        scale_rewards="group",
        max_completion_length=256,
        temperature=1.0,
        report_to=["wandb"],
        reward_weights=[1.0],
        use_vllm=False,  # use_vllm: auto -> no vLLM without CUDA
    )


CUSTOM_YAML = """\
mode: local
output_dir: /tmp/custom_runs
rewards:
  - name: numeric_match
    weight: 2.0
  - name: format
    weight: 0.5
    kwargs: {pattern: '\\d+'}
training:
  num_train_epochs: 2
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 2
  learning_rate: 1.0e-4
  lr_scheduler_type: cosine
  weight_decay: 0.1
  max_grad_norm: 0.5
  save_total_limit: 3
  bf16: false
  adam_beta2: 0.99  # a pass-through TrainingArguments field
grpo:
  generation_batch_size: 16
  num_generations: 4
  beta: 0.0
  num_iterations: 2
  epsilon: 0.3
  loss_type: dr_grpo
  scale_rewards: batch
  importance_sampling_level: sequence
  mask_truncated_completions: true
  epsilon_high: 0.28  # a pass-through GRPOConfig field
generation:
  max_completion_length: 32
  temperature: 0.7
  top_p: 0.9
  top_k: 50
  min_p: 0.05
  repetition_penalty: 1.1
logging:
  report_to: [none]
"""


def _by_hand_custom() -> GRPOConfig:
    return GRPOConfig(
        output_dir="/tmp/custom_runs",
        num_train_epochs=2,
        max_steps=-1,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        learning_rate=1e-4,
        warmup_steps=0,
        lr_scheduler_type="cosine",
        weight_decay=0.1,
        max_grad_norm=0.5,
        save_total_limit=3,
        logging_steps=1,  # from the local preset
        save_steps=50,  # from the local preset
        seed=42,
        activation_checkpointing=False,  # YAML gradient_checkpointing (renamed in transformers 5)
        bf16=False,
        use_cpu=True,
        adam_beta2=0.99,
        generation_batch_size=16,
        num_generations=4,
        beta=0.0,
        num_iterations=2,
        epsilon=0.3,
        epsilon_high=0.28,
        loss_type="dr_grpo",
        scale_rewards="batch",
        importance_sampling_level="sequence",
        mask_truncated_completions=True,
        max_completion_length=32,
        temperature=0.7,
        top_p=0.9,
        top_k=50,
        min_p=0.05,
        repetition_penalty=1.1,
        report_to="none",
        reward_weights=[2.0, 0.5],
        use_vllm=False,
    )


def _compare(loader: GRPOConfigLoader, expected: GRPOConfig) -> None:
    built = GRPOConfig(**loader.trl_kwargs(world_size=1, facts=machine("cpu")))
    got, want = built.to_dict(), expected.to_dict()
    for key in IGNORED:
        got.pop(key, None), want.pop(key, None)
    differ = {k: (got.get(k), want.get(k)) for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)}
    assert not differ, f"fields that differ (loader, by hand): {differ}"


@pytest.mark.parametrize(
    "preset, by_hand", [("grpo_local.yaml", _by_hand_local), ("grpo_cluster.yaml", _by_hand_cluster)]
)
def test_preset_builds_the_hand_written_grpo_config(preset, by_hand):
    _compare(GRPOConfigLoader(config_path=REPO_ROOT / "configs" / preset), by_hand())


def test_mode_flag_gives_the_same_config_as_the_preset_file():
    _compare(GRPOConfigLoader(mode="cluster"), _by_hand_cluster())
    _compare(GRPOConfigLoader(), _by_hand_local())


def test_demo_preset_builds_a_grpo_config():
    loader = GRPOConfigLoader(config_path=REPO_ROOT / "configs" / "grpo_demo.yaml")
    config = GRPOConfig(**loader.trl_kwargs(world_size=1, facts=machine("cpu")))
    assert config.use_cpu and not config.bf16


def test_every_section_maps_to_its_trl_field(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text(CUSTOM_YAML)
    _compare(GRPOConfigLoader(config_path=path), _by_hand_custom())
