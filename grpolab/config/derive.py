"""Derived quantities of a resolved config: what `grpolab config explain` prints, and what
the training run logs. Formulas follow TRL's GRPOConfig and RepeatSampler."""

from __future__ import annotations

from .schema import GRPOLabConfig
from .validate import resolved_generation


def derived_quantities(cfg: GRPOLabConfig, world_size: int, dataset_size: int | None = None) -> dict:
    t, g = cfg.training, cfg.grpo
    P, GA, G, mu = t.per_device_train_batch_size, t.gradient_accumulation_steps, g.num_generations, g.num_iterations
    B, S = resolved_generation(cfg, world_size)
    optimizer_steps_per_round = S * mu / GA
    out = {
        "world_size": world_size,
        # README's definition: per_device_train_batch_size x gradient_accumulation_steps x num_gpus.
        "effective_batch_size": P * GA * world_size,
        "generation_batch_size": B,
        "unique_prompts_per_round": B // G,
        "steps_per_generation": S,
        "optimizer_steps_per_round": optimizer_steps_per_round,
        # One optimizer step per generation round and one pass: the ratio is 1, clipping never acts.
        "on_policy": S == GA and mu == 1,
        "kl_tracked": g.beta > 0,
        "reference_model_loaded": g.beta > 0,
        "completion_tokens_per_round_max": B * cfg.generation.max_completion_length,
    }
    if dataset_size is not None:
        rounds = dataset_size // (B // G)  # the sampler drops an incomplete last round
        out["generation_rounds_per_epoch"] = rounds
        out["optimizer_steps_per_epoch"] = int(rounds * optimizer_steps_per_round)
        if t.max_steps > 0:
            out["total_optimizer_steps"] = t.max_steps
        else:
            out["total_optimizer_steps"] = int(out["optimizer_steps_per_epoch"] * t.num_train_epochs)
    return out
