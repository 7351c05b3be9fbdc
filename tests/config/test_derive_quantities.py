"""The derived quantities `grpolab config explain` prints (config/derive.py), per mode."""

from __future__ import annotations

from grpolab.config import GRPOConfigLoader
from grpolab.config.derive import Derived, derive


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
