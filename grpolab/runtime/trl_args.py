"""Resolved config + the runtime's decisions -> trl.GRPOConfig keyword arguments (no trl import). Every
key that reaches TRL goes through `to_trl_kwargs`; it lives here, not in config, as it consumes `resolve`."""

from __future__ import annotations

from grpolab.config.keys import lookup
from grpolab.config.schema import GRPOLabConfig, trl_names

from . import hardware
from .hardware import HardwareFacts
from .resolve import Resolved, resolve


def trl_kwargs(cfg: GRPOLabConfig, world_size: int | None = None, facts: HardwareFacts | None = None) -> dict:
    """GRPOConfig kwargs with every `auto` decided for `facts` (default: this machine, probed without torch)."""
    return to_trl_kwargs(cfg, resolve(cfg, facts or hardware.probe(use_torch=False), world_size=world_size))


def to_trl_kwargs(cfg: GRPOLabConfig, resolved: Resolved) -> dict:
    """Every typed key to its GRPOConfig field (schema.trl_names), extras under their own names; the
    `auto`s come from `resolved` (nothing is decided here), output_dir and run_name from the pipeline."""
    data = cfg.model_dump()
    kwargs = {trl: lookup(data, key) for key, trl in trl_names().items() if "[]" not in key}
    kwargs |= (cfg.training.model_extra or {}) | (cfg.grpo.model_extra or {})
    kwargs.update(bf16=resolved.bf16, use_liger_kernel=resolved.liger, use_vllm=resolved.use_vllm)
    # A pass-through `training.use_cpu: true` forces CPU; without a GPU transformers needs it.
    kwargs["use_cpu"] = bool(kwargs.get("use_cpu")) or resolved.device == "cpu"
    if kwargs["generation_batch_size"] == "auto":
        del kwargs["generation_batch_size"]  # TRL derives P x W x (steps_per_generation or GA)
    if kwargs["steps_per_generation"] is None:
        del kwargs["steps_per_generation"]  # never emit both (TRL rejects it)
    kwargs["reward_weights"] = [reward.weight for reward in cfg.rewards]
    if cfg.model.revision:  # the reference model must be the same revision as the policy
        kwargs["model_init_kwargs"] = {"revision": cfg.model.revision}
    kwargs["report_to"] = [t for t in cfg.logging.report_to if t != "none"] or "none"
    # vLLM's settings only where vLLM runs, the server's only in server mode.
    unused = {"vllm_mode", "vllm_gpu_memory_utilization"} if not resolved.use_vllm else set()
    if not resolved.use_vllm or cfg.cluster.vllm_mode != "server":
        unused |= {"vllm_server_host", "vllm_server_port"}
    return {name: value for name, value in kwargs.items() if name not in unused}
