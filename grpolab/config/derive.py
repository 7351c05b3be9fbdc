"""Derived quantities of a resolved config (config explain, the plan and run record, memory plan, doctor).
Formulas follow TRL's GRPOConfig, RepeatSampler and GRPOTrainer, each written once here as a field of `Derived`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .schema import GRPOLabConfig


def generation_round(
    per_device: int, accumulation: int, generation_batch: int | str, steps_per_generation: int | None, world: int
) -> tuple[int, int]:
    """(generation_batch_size B, steps_per_generation S) exactly as TRL's GRPOConfig resolves them."""
    per_step = per_device * world
    if generation_batch == "auto":
        steps = steps_per_generation or accumulation
        return per_step * steps, steps
    return generation_batch, generation_batch // per_step


def followed_generation_batch(
    per_device: int, accumulation: int, generations: int, steps_per_generation: int | None, world: int | None
) -> int | str:
    """The generation_batch_size that follows the batch keys: TRL's `auto` (P x W x S) where that
    makes whole groups of `generations`, else the smallest round above it that is a multiple of
    both P x W and the group (the local preset's 8 at P 1 is that rule's value). An unknown world
    size, or a steps_per_generation the user set, leaves it to `auto`."""
    steps = steps_per_generation or accumulation
    if world is None or steps_per_generation is not None or (per_device * world * steps) % generations == 0:
        return "auto"
    step = math.lcm(per_device * world, generations)
    return -(-per_device * world * steps // step) * step


def resolved_generation(cfg: GRPOLabConfig, world_size: int) -> tuple[int, int]:
    t, g = cfg.training, cfg.grpo
    P, GA = t.per_device_train_batch_size, t.gradient_accumulation_steps
    return generation_round(P, GA, g.generation_batch_size, g.steps_per_generation, world_size)


def reference_model_rule(beta: float, peft: bool) -> tuple[bool, str]:
    """(whether TRL loads a separate reference model, why), TRL's rule in GRPOTrainer.__init__: none
    at beta 0 (no KL term), none under PEFT (the policy with its adapter disabled is the reference),
    else a second copy of the weights."""
    if beta <= 0:
        return False, "beta 0: no reference model"
    if peft:
        return False, "no reference model: LoRA disables the adapter to get the reference"
    return True, "reference model loaded: a frozen copy of the policy"


def reference_model(cfg: GRPOLabConfig) -> tuple[bool, str]:
    return reference_model_rule(cfg.grpo.beta, peft=cfg.model.lora.enabled)


@dataclass(frozen=True)
class Derived:
    world_size: int
    # README's definition: per_device_train_batch_size x gradient_accumulation_steps x num_gpus.
    effective_batch_size: int
    generation_batch_size: int
    unique_prompts_per_round: int
    steps_per_generation: int
    optimizer_steps_per_round: float
    # One optimizer step per generation round and one pass: the ratio is 1, clipping never acts.
    on_policy: bool
    kl_tracked: bool
    reference_model: bool
    reference_model_why: str
    completion_tokens_per_round_max: int
    # Known only with a dataset size:
    generation_rounds_per_epoch: int | None = None
    optimizer_steps_per_epoch: int | None = None
    total_optimizer_steps: int | None = None

    def to_dict(self) -> dict:
        """The JSON form (`config explain --json`, the run record, W&B); unknown epoch counts left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def derive(cfg: GRPOLabConfig, world_size: int, dataset_size: int | None = None) -> Derived:
    t, g = cfg.training, cfg.grpo
    GA, G, mu = t.gradient_accumulation_steps, g.num_generations, g.num_iterations
    B, S = resolved_generation(cfg, world_size)
    per_round = S * mu / GA
    loaded, why = reference_model(cfg)
    epoch: dict = {}
    if dataset_size is not None:
        rounds = dataset_size // (B // G)  # the sampler drops an incomplete last round
        per_epoch = int(rounds * per_round)
        total = t.max_steps if t.max_steps > 0 else int(per_epoch * t.num_train_epochs)
        epoch = dict(
            generation_rounds_per_epoch=rounds, optimizer_steps_per_epoch=per_epoch, total_optimizer_steps=total
        )
    return Derived(
        world_size=world_size,
        effective_batch_size=t.per_device_train_batch_size * GA * world_size,
        generation_batch_size=B,
        unique_prompts_per_round=B // G,
        steps_per_generation=S,
        optimizer_steps_per_round=per_round,
        on_policy=S == GA and mu == 1,
        kl_tracked=g.beta > 0,
        reference_model=loaded,
        reference_model_why=why,
        completion_tokens_per_round_max=B * cfg.generation.max_completion_length,
        **epoch,
    )
