"""Resolved grpolab config + the runtime's decisions -> keyword arguments for trl.GRPOConfig. No trl
import here.

Every grpolab key that reaches TRL goes through `to_trl_kwargs`, so this is the place to look for
"what does key X become in TRL". It lives above `resolve` because it consumes its decisions (the
config room imports nothing from runtime).
"""

from __future__ import annotations

from grpolab.config.schema import GRPOLabConfig
from grpolab.config.trl_snapshot import trl_fields

from . import hardware
from .hardware import HardwareFacts
from .resolve import Resolved, resolve


def trl_kwargs(cfg: GRPOLabConfig, world_size: int | None = None, facts: HardwareFacts | None = None) -> dict:
    """GRPOConfig kwargs with every `auto` decided for `facts`; default: this machine, probed as
    `config explain` does (nvidia-smi and /proc, no torch), so a GPU box gets its GPU's precision."""
    facts = facts if facts is not None else hardware.probe(use_torch=False)
    return to_trl_kwargs(cfg, resolve(cfg, facts, world_size=world_size))


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
