"""Held-out scoring: greedy completions for held-out prompts, scored by numeric match against
their `answer` column. Runs on the model's own device, batched."""

from __future__ import annotations

from collections.abc import Sequence

from grpolab.train.rewards import numeric_match


def greedy_completions(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 64):
    """Greedy completion texts for string prompts, left-padded so every prompt ends next to its
    generated tokens."""
    import torch

    was_training = model.training
    model.eval()
    texts: list[str] = []
    try:
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                batch = list(prompts[start : start + batch_size])
                enc = tokenizer(
                    batch, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
                ).to(model.device)
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
                texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        model.train(was_training)
    return texts


class HeldOutScorer:
    """`scorer(model)` -> the fraction of held-out rows whose greedy completion matches `answer`."""

    def __init__(self, rows: Sequence[dict], tokenizer, max_new_tokens: int):
        if not rows:
            raise ValueError("held-out scoring needs at least one row")
        self.rows, self.tokenizer, self.max_new_tokens = list(rows), tokenizer, max_new_tokens

    def __call__(self, model) -> float:
        texts = greedy_completions(model, self.tokenizer, [r["prompt"] for r in self.rows], self.max_new_tokens)
        scores = numeric_match(texts, [r["answer"] for r in self.rows])
        return sum(scores) / len(scores)
