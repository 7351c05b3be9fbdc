"""Model and tokenizer loading: a Hub id or a local path, with one clear message when it cannot load."""

from __future__ import annotations

import os
from pathlib import Path

from grpolab.config import ConfigError, Problem


def _load_error(name: str, exc: Exception) -> ConfigError:
    local = Path(name).expanduser()
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not local.exists() and name.startswith((".", "/", "~")):
        return ConfigError(
            Problem(
                "model.name_or_path",
                f"no model folder at `{name}` (resolved to {local.resolve()}).",
                "point --model at a folder with config.json and the weights (as written by save_pretrained)",
            )
        )
    if local.exists():
        return ConfigError(
            Problem(
                "model.name_or_path",
                f"could not load the model at `{name}`: {first}",
                "point --model at a folder with config.json and the weights (as written by save_pretrained)",
            )
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    why = (
        "the Hub is offline (HF_HUB_OFFLINE=1) and it is not in the local cache"
        if offline
        else "it is not a local folder and the Hub could not be reached or has no such model"
    )
    return ConfigError(
        Problem(
            "model.name_or_path",
            f"could not load model `{name}`: {why} ({first}).",
            "pass a local path (--model ./my_model), download it once where the Hub is "
            "reachable (`hf download` fills the cache), "
            "or unset HF_HUB_OFFLINE if you are online",
        )
    )


def load_tokenizer(name: str, model_cfg):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
        )
    except Exception as exc:
        raise _load_error(name, exc) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # gpt2 and friends have no pad token
    return tokenizer


def load_model(name: str, model_cfg, dtype: str):
    """`dtype`: the torch dtype name the runtime decided (`Resolved.model_dtype`)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": getattr(torch, dtype), "trust_remote_code": model_cfg.trust_remote_code}
    if model_cfg.revision:
        kwargs["revision"] = model_cfg.revision
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except Exception as exc:
        raise _load_error(name, exc) from None


def context_length(model, tokenizer) -> int | None:
    """The model's maximum positions (prompt + completion must fit)."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 1_000_000 else None


def lora_config(model_cfg):
    """peft LoraConfig for GRPOTrainer(peft_config=...), or None."""
    if not model_cfg.lora.enabled:
        return None
    from peft import LoraConfig

    lora = model_cfg.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
