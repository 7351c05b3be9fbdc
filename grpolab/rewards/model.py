"""Reward models scoring prompt + completion as TRL does (chat-templated, right-padded, logits[:, 0]); grpolab
runs the forward itself so `batch_size` and `device` hold and the dry run scores as training does."""

from __future__ import annotations

import os

from grpolab.config import ConfigError
from grpolab.runtime import hardware, hub

from .errors import RewardFunctionError, completion_text

# Reward models loaded in this process, for the plan (extra memory the user should see).
LOADED: list = []


class RewardModel:
    """A callable reward (TRL's reward signature) backed by a sequence-classification model."""

    def __init__(self, path: str, key: str, batch_size=None, dtype=None, device=None, trust_remote_code=False):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path, self.key, self.batch_size = path, key, batch_size
        if not device or device == "auto":  # its rank's GPU
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        self.device = device
        hub.check_reachable(path, key)
        if not dtype or dtype == "auto":  # native bf16 only (runtime.hardware decides what counts)
            dtype = "bfloat16" if device.startswith("cuda") and hardware.probe().gpu_bf16 else "float32"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
            )
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError.of(
                key,
                f"could not load the reward model `{path}`: {first}",
                "give a local folder with config.json, weights and tokenizer (save_pretrained), or a Hub id "
                "of a sequence-classification model (offline: one in the cache)",
            ) from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # The model reads the score at the last non-pad token, so it must know the pad id.
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval()
        self.parameters = sum(p.numel() for p in self.model.parameters())
        LOADED.append(self)

    def texts(self, prompts, completions) -> list[str]:
        if prompts and isinstance(prompts[0], list):
            if not getattr(self.tokenizer, "chat_template", None):
                raise RewardFunctionError(
                    f"reward model `{self.path}` ({self.key}): the prompts are chat messages but its tokenizer "
                    "has no chat template to render them with"
                )
            return [
                self.tokenizer.apply_chat_template(
                    p + (c if isinstance(c, list) else [{"role": "assistant", "content": c}]), tokenize=False
                )
                for p, c in zip(prompts, completions)
            ]
        return [p + completion_text(c) for p, c in zip(prompts, completions)]

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        import torch

        texts = self.texts(prompts, completions)
        step = self.batch_size or max(1, len(texts))
        scores: list[float] = []
        for start in range(0, len(texts), step):
            batch = texts[start : start + step]
            enc = self.tokenizer(
                batch, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False
            )
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                scores += self.model(**enc).logits[:, 0].float().tolist()
        return scores
