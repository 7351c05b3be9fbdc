"""TRL fields a config does not take under `training:` / `grpo:`: OWNED ones grpolab sets from its own keys
(pass-through would set one thing twice), REMOVED ones TRL or transformers dropped or renamed. Messages and
`config import` (which routes a recipe's key to `Owner.key`) read these as data."""

from __future__ import annotations

from dataclasses import dataclass

from .schema import trl_names


@dataclass(frozen=True)
class Owner:
    key: str | None  # the grpolab key that sets the TRL field; None when no single key does
    via: str  # how to say it: "`generation.temperature`", "the `--run-name` flag"


# TRL fields set by a flag or by several keys, not by one key of the schema.
BY_OTHER_MEANS: dict[str, Owner] = {
    "run_name": Owner(None, "the `--run-name` flag"),
    "resume_from_checkpoint": Owner(None, "the `--resume RUN_DIR` flag"),
    "model_init_kwargs": Owner(None, "the `model:` section (dtype, trust_remote_code, revision, attn_implementation)"),
}


def _owner(key: str) -> Owner:
    if "[]." in key:  # `rewards[].weight`: one value per entry, no single key
        listed, _, name = key.partition("[].")
        return Owner(None, f"the `{name}` of each entry in `{listed}:`")
    return Owner(key, f"`{key}`" + ("" if "." in key else " (top level)"))


# Every TRL field a schema key sets under another name than `training.FIELD` / `grpo.FIELD`
# (schema.trl_names): `generation.top_p`, `cluster.use_vllm`, `training.gradient_checkpointing`.
OWNED: dict[str, Owner] = {
    **{trl: _owner(key) for key, trl in trl_names().items() if key not in (f"training.{trl}", f"grpo.{trl}")},
    **BY_OTHER_MEANS,
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
