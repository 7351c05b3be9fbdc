"""Model and tokenizer loading: a Hub id or a local path, with one clear message when it cannot load."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from grpolab.config import ConfigError
from grpolab.config.errors import MODEL_NOT_LOADED
from grpolab.config.yaml_io import real_path
from grpolab.runtime import hub


def load_error(name: str, exc: Exception) -> ConfigError:
    local = Path(name).expanduser()
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if local.exists() or name.startswith((".", "/", "~")):
        why = f"could not load the model at `{name}`: {first}"
        why = why if local.exists() else f"no model folder at `{name}` (resolved to {real_path(local)})."
        fix = "point --model at a folder with config.json and the weights (as written by save_pretrained)"
        return ConfigError.of("model.name_or_path", why, fix, kind=MODEL_NOT_LOADED)
    if hub.offline():
        why = "the Hub is offline (HF_HUB_OFFLINE=1) and it is not in the local cache"
        fix = (
            "pass a local path (--model ./my_model), download it once where the Hub is "
            "reachable (`hf download` fills the cache), or unset HF_HUB_OFFLINE if you are online"
        )
    else:
        why = "it is not a local folder and the Hub has no such model (or it is gated/private)"
        fix = (
            "check the id (owner/name) and model.revision, log in for a gated model "
            "(`hf auth login`), or pass a local path"
        )
    return ConfigError.of(
        "model.name_or_path", f"could not load model `{name}`: {why} ({first}).", fix, kind=MODEL_NOT_LOADED
    )


def check_model_options(cfg, name: str) -> None:
    """Options that only the model's own config.json can settle, checked before it loads (and in
    --dry-run): GRPOTrainer refuses them only after the model is in memory. A model without a
    readable config.json is left to the loader."""
    extra = cfg.grpo.model_extra or {}
    coef, cast = extra.get("router_aux_loss_coef"), extra.get("cast_lm_head_to_fp32") is True
    config = hub.model_config(name, cfg.model.revision) if coef or cast else {}
    if coef and config and "output_router_logits" not in config:  # what TRL asks of a Mixture-of-Experts config
        raise ConfigError.of(
            "grpo.router_aux_loss_coef",
            f"is {coef}, but `{name}` is not a Mixture-of-Experts model (its config.json has no "
            "`output_router_logits`), so there is no router loss to weigh",
            "remove `grpo.router_aux_loss_coef` (or set it to 0)",
        )
    # GRPOConfig's help: the cast is "only supported when ... tie_word_embeddings ... is False"; with a
    # tied head GRPOTrainer reaches for `model.model.embed_tokens`, which GPT-2-style models lack.
    if cast and config.get("tie_word_embeddings") is True:
        raise ConfigError.of(
            "grpo.cast_lm_head_to_fp32",
            f"is true, but `{name}` ties its LM head to the word embeddings (config.json: "
            "`tie_word_embeddings: true`), and TRL casts only an untied head",
            "set `grpo.cast_lm_head_to_fp32: false`, or use a model with untied embeddings",
        )


# A local model folder needs one of these to have a tokenizer (as save_pretrained writes them).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")


def load_tokenizer(name: str, model_cfg):
    from transformers import AutoTokenizer

    folder = Path(name).expanduser()
    if folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ConfigError.of(
            "model.name_or_path",
            f"`{name}` has no tokenizer files (none of {', '.join(TOKENIZER_FILES)}).",
            "save the tokenizer next to the weights (`tokenizer.save_pretrained(folder)`)",
        )
    tokenizer = from_pretrained(
        AutoTokenizer, name, model_cfg, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # gpt2 and friends have no pad token
    return tokenizer


def load_model(name: str, model_cfg, dtype: str):
    """`dtype`: the torch dtype name the runtime decided (`Resolved.model_dtype`)."""
    import torch
    from transformers import AutoModelForCausalLM

    optional = {"revision": model_cfg.revision, "attn_implementation": model_cfg.attn_implementation}
    kwargs = {"dtype": getattr(torch, dtype), "trust_remote_code": model_cfg.trust_remote_code}
    kwargs |= {key: value for key, value in optional.items() if value}
    if model_cfg.quantization is not None:  # on this rank's GPU, else the CPU
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        kwargs["quantization_config"] = quantization_config(model_cfg, dtype, device)
        kwargs["device_map"] = {"": device}  # bitsandbytes quantizes while placing the weights
    return from_pretrained(AutoModelForCausalLM, name, model_cfg, **kwargs)


def from_pretrained(auto, name: str, model_cfg, **kwargs):
    hub.check_reachable(name, "model.name_or_path", revision=model_cfg.revision)
    try:
        return auto.from_pretrained(name, **kwargs)
    except Exception as exc:
        raise load_error(name, exc) from None


def check_quantization(model_cfg, device: str) -> None:
    """bitsandbytes must be installed and have a backend for `device` (its CPU backend ships in
    recent releases); otherwise a ConfigError that names the fix, before anything loads."""
    q = model_cfg.quantization
    if q is None:
        return
    width = "4-bit" if q.load_in_4bit else "8-bit"
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError.of(
            "model.quantization",
            f"{width} loading needs bitsandbytes, which is not installed.",
            "pip install bitsandbytes (CUDA GPUs; recent releases run on CPU too), or remove `model.quantization`",
        )
    if device == "cpu" and importlib.util.find_spec("bitsandbytes.backends.cpu") is None:
        import bitsandbytes

        raise ConfigError.of(
            "model.quantization",
            f"{width} loading on this machine needs a CUDA GPU: no GPU is visible and bitsandbytes "
            f"{getattr(bitsandbytes, '__version__', '?')} has no CPU backend.",
            "run on a CUDA GPU, upgrade bitsandbytes (its CPU backend), or remove `model.quantization`",
        )


def quantization_config(model_cfg, dtype: str, device: str):
    """transformers' BitsAndBytesConfig for `model.quantization` (checked first)."""
    import torch
    from transformers import BitsAndBytesConfig

    check_quantization(model_cfg, device)
    q = model_cfg.quantization
    if q.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = getattr(torch, dtype if q.compute_dtype == "auto" else q.compute_dtype)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_use_double_quant=q.double_quant,
    )


def context_length(model, tokenizer) -> int | None:
    """The model's maximum positions (prompt + completion must fit): its config's, read by the same
    rule as a config.json on disk (runtime/hub), else the tokenizer's limit."""
    limit = getattr(tokenizer, "model_max_length", None)
    limit = limit if isinstance(limit, int) and limit < 1_000_000 else None
    return hub.context_length(model.config.get_text_config().to_dict()) or limit


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
