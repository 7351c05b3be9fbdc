"""TRL fields that a grpolab config does not take under `training:` / `grpo:`.

OWNED: fields grpolab sets from one of its own keys (or a flag): writing them as pass-through
would set one thing in two places. REMOVED: fields TRL or transformers removed or renamed.
Validation words its messages from these structures, and `config import` routes a recipe's
key to `Owner.key`, so the target key is data, not a sentence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Owner:
    key: str | None  # the grpolab key that sets the TRL field; None when no single key does
    via: str  # how to say it: "`generation.temperature`", "the `--run-name` flag"


def _key(key: str, note: str = "") -> Owner:
    return Owner(key, f"`{key}`{note}")


OWNED: dict[str, Owner] = {
    "output_dir": _key("output_dir", " (top level)"),
    "run_name": Owner(None, "the `--run-name` flag"),
    "report_to": _key("logging.report_to"),
    "resume_from_checkpoint": Owner(None, "the `--resume RUN_DIR` flag"),
    "reward_weights": Owner(None, "the `weight` of each entry in `rewards:`"),
    "trust_remote_code": _key("model.trust_remote_code"),
    "model_init_kwargs": Owner(None, "the `model:` section (dtype, trust_remote_code, revision, attn_implementation)"),
    **{
        k: _key(f"generation.{k}")
        for k in ("max_completion_length", "temperature", "top_p", "top_k", "min_p", "repetition_penalty")
    },
    **{
        k: _key(f"cluster.{k}")
        for k in ("use_vllm", "vllm_mode", "vllm_server_host", "vllm_server_port", "vllm_gpu_memory_utilization")
    },
}


@dataclass(frozen=True)
class Removed:
    why: str  # what happened to it, as the rest of a sentence that starts with the key
    use: str | None = None  # the grpolab key that replaces it, if one does


REMOVED: dict[str, Removed] = {
    "max_prompt_length": Removed(
        "was removed from TRL (prompts are never truncated); grpolab drops prompts that do not fit the "
        "model's context and counts them"
    ),
    "warmup_ratio": Removed(
        "was removed from transformers 5; use `training.warmup_steps` with a float in [0, 1) as a ratio",
        "training.warmup_steps",
    ),
    "use_liger_loss": Removed("was renamed; use `training.use_liger_kernel`", "training.use_liger_kernel"),
    "vllm_guided_decoding_regex": Removed(
        "was renamed; use `grpo.vllm_structured_outputs_regex`", "grpo.vllm_structured_outputs_regex"
    ),
}


def trl_field_of(key: str) -> str | None:
    """The TRL field a grpolab key is written to when grpolab owns it (`generation.top_p` -> top_p)."""
    for field, owner in OWNED.items():
        if owner.key == key:
            return field
    return None
