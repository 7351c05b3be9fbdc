"""Resolved grpolab config -> keyword arguments for trl.GRPOConfig. No trl import here.

Every grpolab key that reaches TRL goes through this one function, so this is the place to
look for "what does key X become in TRL".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .schema import GRPOLabConfig
from .validate import trl_fields

if TYPE_CHECKING:
    from grpolab.runtime.resolve import Resolved


def to_trl_kwargs(cfg: GRPOLabConfig, resolved: Resolved) -> dict:
    """`resolved` holds the runtime's decisions for where the run executes (`auto` precision,
    Liger, generation engine, device): this function decides nothing itself. The run directory
    (output_dir, run_name) is filled in by the training pipeline."""
    kwargs: dict = {}

    training = cfg.training.model_dump()  # typed fields and pass-through extras alike
    kwargs.update(training)
    kwargs["bf16"] = resolved.bf16
    kwargs["use_liger_kernel"] = resolved.liger
    # transformers 5.x renamed gradient_checkpointing to activation_checkpointing (the old name warns).
    checkpointing = kwargs.pop("gradient_checkpointing")
    if "activation_checkpointing" in trl_fields()["training"]:
        kwargs.setdefault("activation_checkpointing", checkpointing)
    else:
        kwargs["gradient_checkpointing"] = checkpointing
    # A pass-through `training.use_cpu: true` forces CPU; without a GPU transformers needs it.
    kwargs["use_cpu"] = bool(kwargs.get("use_cpu")) or resolved.device == "cpu"

    grpo = cfg.grpo.model_dump()
    if grpo["generation_batch_size"] == "auto":
        del grpo["generation_batch_size"]  # TRL derives P x W x (steps_per_generation or GA)
    if grpo["steps_per_generation"] is None:
        del grpo["steps_per_generation"]  # never emit both (TRL rejects it)
    kwargs.update(grpo)

    kwargs.update(cfg.generation.model_dump())

    kwargs["reward_weights"] = [reward.weight for reward in cfg.rewards]
    kwargs["trust_remote_code"] = cfg.model.trust_remote_code  # TRL loads the reference model with it
    if cfg.model.revision:  # the reference model must be the same revision as the policy
        kwargs["model_init_kwargs"] = {"revision": cfg.model.revision}
    trackers = [t for t in cfg.logging.report_to if t != "none"]
    kwargs["report_to"] = trackers or "none"
    kwargs["output_dir"] = cfg.output_dir

    kwargs["use_vllm"] = resolved.use_vllm
    if resolved.use_vllm:
        c = cfg.cluster
        kwargs.update(vllm_mode=c.vllm_mode, vllm_gpu_memory_utilization=c.vllm_gpu_memory_utilization)
        if c.vllm_mode == "server":
            kwargs.update(vllm_server_host=c.vllm_server_host, vllm_server_port=c.vllm_server_port)
    return kwargs
