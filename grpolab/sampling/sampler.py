"""k completions per prompt, as TRL's trainer generates them: its chat template, prompts left-padded,
every sampling setting passed explicitly (a model's generation_config cannot change `top_k` or `top_p`
behind the config's back), each completion cut at its first end token. torch loads only to sample."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    samples: int = 1  # completions per prompt
    greedy: bool = False  # argmax decoding; the sampling settings below are then unused
    temperature: float = 1.0
    top_p: float = 1.0  # 1 = off
    top_k: int = 0  # 0 = off, as in TRL's GRPOConfig (transformers' own default would be 50)
    min_p: float | None = None
    repetition_penalty: float = 1.0
    batch_size: int = 64  # prompts per generate() call
    seed: int | None = None  # seeds torch before the first call, for a reproducible draw
    bf16_autocast: bool = False  # generate under bf16 autocast, as a bf16 training run does

    @classmethod
    def as_training(cls, generation, samples: int, **more) -> Sampling:
        """The run's own sampling (the config's `generation:` section), as TRL's trainer generates."""
        settings = {k: getattr(generation, k) for k in SAMPLING_SETTINGS}
        return cls(generation.max_completion_length, samples=samples, **settings, **more)

    def generate_kwargs(self, tokenizer) -> dict:
        kwargs = dict(
            max_new_tokens=self.max_new_tokens,
            num_return_sequences=self.samples,
            num_beams=1,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            do_sample=not self.greedy,
        )
        return kwargs if self.greedy else kwargs | {k: getattr(self, k) for k in SAMPLING_SETTINGS}


# The sampling settings the config's `generation:` section and generate() share, by name.
SAMPLING_SETTINGS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


@dataclass(frozen=True)
class Completion:
    text: str
    ids: list[int]  # the generated tokens up to, not including, the end token
    ended: bool  # an end-of-sequence token ended it (else it ran to max_new_tokens)

    @property
    def length(self) -> int:
        """Tokens, the end token included, as TRL counts completion length."""
        return len(self.ids) + self.ended

    @property
    def truncated(self) -> bool:
        return not self.ended


@dataclass(frozen=True)
class Samples:
    groups: list[list[Completion]]  # one group of `samples` completions per prompt, in prompt order
    seconds: float  # time in generate() calls

    @property
    def flat(self) -> list[Completion]:
        return [c for group in self.groups for c in group]


def trim(ids: list[int], eos, pad) -> tuple[list[int], bool]:
    """The tokens before the first end token, and whether there was one (trailing padding dropped)."""
    if eos in ids:
        return ids[: ids.index(eos)], True
    while ids and pad is not None and ids[-1] == pad:
        ids = ids[:-1]
    return ids, False


def sample(model, tokenizer, prompts: list, s: Sampling) -> Samples:
    """`s.samples` completions for every prompt, in prompt order, with the model in eval mode and
    no gradients (its training mode is restored after)."""
    import torch

    if s.seed is not None:
        torch.manual_seed(s.seed)
    device, was_training = model.device, model.training
    model.eval()
    groups, seconds = [], 0.0
    try:
        for start in range(0, len(prompts), s.batch_size):
            # Chat messages go through the template the trainer uses, ready for the answer; a string as it is.
            batch = [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                if isinstance(p, list)
                else p
                for p in prompts[start : start + s.batch_size]
            ]
            enc = tokenizer(batch, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            began = time.perf_counter()
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.bf16_autocast):
                out = model.generate(**enc, **s.generate_kwargs(tokenizer))
            seconds += time.perf_counter() - began
            trimmed = [
                trim(row, tokenizer.eos_token_id, tokenizer.pad_token_id)
                for row in out[:, enc["input_ids"].shape[1] :].tolist()
            ]
            done = [Completion(tokenizer.decode(ids, skip_special_tokens=True), ids, ended) for ids, ended in trimmed]
            groups += [done[i : i + s.samples] for i in range(0, len(done), s.samples)]
    finally:
        model.train(was_training)
    return Samples(groups, seconds)


@dataclass(frozen=True)
class Scored:
    samples: Samples
    values: list[list | None]  # per reward function, one value (or None) per completion in prompt order
    errors: dict[int, Exception]  # reward index -> the tolerated error it raised (its values are None)

    def weighted_total(self, weights: list[float]) -> list[float]:
        """Per completion: the weighted sum of the rewards, None and failed rewards counting 0."""
        total = [0.0] * len(self.samples.flat)
        for values, w in zip(self.values, weights):
            if values is not None:
                total = [t + w * (0.0 if v is None else float(v)) for t, v in zip(total, values)]
        return total


def sample_and_score(
    model, tokenizer, rows: list[dict], s: Sampling, reward_funcs: list, tolerate: tuple = ()
) -> Scored:
    """The one generate-and-score path: `s.samples` completions for each row's prompt, scored by
    every reward function (None entries are skipped) as TRL calls them. A reward raising one of
    `tolerate` is recorded in `errors` (the dry run reports every failing reward at once)."""
    samples = sample(model, tokenizer, [r["prompt"] for r in rows], s)
    # What TRL passes a reward function, one entry per completion: prompts, completions (text for text
    # prompts, a message list for chat), their token ids, and every other dataset column.
    per = [(row, c) for row, group in zip(rows, samples.groups) for c in group]
    inputs = {
        "prompts": [row["prompt"] for row, _ in per],
        "completions": [
            [{"role": "assistant", "content": c.text}] if isinstance(row["prompt"], list) else c.text for row, c in per
        ],
        "completion_ids": [c.ids for _, c in per],
        **{k: [row[k] for row, _ in per] for k in (rows[0] if rows else {}) if k != "prompt"},
    }
    values: list[list | None] = [None] * len(reward_funcs)
    errors: dict[int, Exception] = {}
    for i, func in enumerate(reward_funcs):
        try:
            values[i] = None if func is None else list(func(**inputs))
        except tolerate as exc:
            errors[i] = exc
    return Scored(samples, values, errors)
