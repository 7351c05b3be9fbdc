"""Held-out evaluation: k completions per held-out prompt (greedy for k = 1) from the one sampler,
on the model's own device, scored by the evaluation rewards. Prompts arrive as the training path made
them. Each point's `eval/` metrics: reward, rewards/<name>, mean@k, pass@1, pass@k (a completion passes
when the pass reward reaches `pass_threshold`), accuracy (greedy, numeric match of `answer`), truncated
and length."""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass

from grpolab.config import ConfigError
from grpolab.rewards.build import build_rewards
from grpolab.rewards.builtin import numeric_match
from grpolab.rewards.errors import completion_text
from grpolab.run.metrics import lower_is_better
from grpolab.sampling import sampler
from grpolab.sampling.sampler import Sampling


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k completions drawn from n (c of which pass) passes:
    1 - C(n-c, k) / C(n, k), the unbiased estimator from n >= k samples."""
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


@dataclass(frozen=True)
class EvalSettings:
    samples: int  # completions per prompt (k); 1 = greedy
    temperature: float
    max_new_tokens: int
    batch_size: int
    pass_reward: str  # the reward whose value decides pass/fail
    pass_threshold: float


class Evaluator:
    """`evaluator(model)` -> {"eval/...": value} for one evaluation point."""

    def __init__(self, rows: list[dict], tokenizer, reward_funcs, reward_names, weights, settings: EvalSettings):
        if not rows:
            raise ValueError("evaluation needs at least one prompt")
        self.rows, self.tokenizer, self.settings = rows, tokenizer, settings
        self.rewards = [(name, f, w) for name, f, w in zip(reward_names, reward_funcs, weights) if callable(f)]
        self.seconds = 0.0  # time spent evaluating, kept out of the training clock

    def __call__(self, model) -> dict:
        began = time.perf_counter()
        s, k = self.settings, self.settings.samples
        funcs = [func for _, func, _ in self.rewards]
        scored = sampler.sample_and_score(model, self.tokenizer, self.rows, _sampling(s), funcs)
        drawn, out, passing = scored.samples.flat, {}, None
        for (name, _, _), values in zip(self.rewards, scored.values):
            values = [0.0 if v is None else float(v) for v in values]
            out[f"eval/rewards/{name}"] = sum(values) / len(values)
            if name == s.pass_reward:
                passing = [v >= s.pass_threshold for v in values]
        total = scored.weighted_total([w for _, _, w in self.rewards])
        out["eval/reward"] = sum(total) / len(total)
        if passing is not None:
            per_prompt = [sum(passing[i * k : (i + 1) * k]) for i in range(len(self.rows))]
            out[f"eval/mean@{k}"] = sum(c / k for c in per_prompt) / len(per_prompt)
            out["eval/pass@1"] = sum(pass_at_k(k, c, 1) for c in per_prompt) / len(per_prompt)
            if k > 1:
                out[f"eval/pass@{k}"] = sum(pass_at_k(k, c, k) for c in per_prompt) / len(per_prompt)
        if "answer" in self.rows[0]:
            prompts = [r["prompt"] for r in self.rows]
            greedy = drawn if k == 1 else sampler.sample(model, self.tokenizer, prompts, _sampling(s, True)).flat
            scores = numeric_match([completion_text(c.text) for c in greedy], [r["answer"] for r in self.rows])
            out["eval/accuracy"] = sum(scores) / len(scores)
        out["eval/truncated"] = sum(c.truncated for c in drawn) / len(drawn)
        out["eval/length"] = sum(c.length for c in drawn) / len(drawn)
        spent = time.perf_counter() - began
        self.seconds += spent
        return {**out, "eval/seconds": round(spent, 3)}


def _sampling(s: EvalSettings, greedy: bool = False) -> Sampling:
    """Plain temperature sampling for k > 1 (top_k and top_p off, explicitly), greedy for k = 1."""
    k = 1 if greedy else s.samples
    return Sampling(s.max_new_tokens, samples=k, greedy=k == 1, temperature=s.temperature, batch_size=s.batch_size)


def make_evaluator(cfg, rows, tokenizer, reward_funcs) -> Evaluator:
    """The evaluator of the `eval:` section: its own rewards when given, else the training ones."""
    e, specs = cfg.eval, cfg.eval.rewards or cfg.rewards
    max_new = e.max_completion_length or cfg.generation.max_completion_length
    if e.rewards:
        reward_funcs, needs = build_rewards(e.rewards, max_new)
        if missing := sorted({c for cols in needs.values() for c in cols} - set(rows[0])):
            raise ConfigError.of(
                "eval.rewards",
                f"read column(s) {', '.join(missing)}, which the held-out rows lack; they have: {', '.join(rows[0])}.",
                f"map one with `data.columns: {{<column>: {missing[0]}}}`",
            )
    # Reward models are scored by TRL inside training; the evaluator scores the function rewards.
    functions = [f if inspect.isroutine(f) or not hasattr(f, "parameters") else None for f in reward_funcs]
    pass_reward = e.pass_reward or specs[0].label
    settings = EvalSettings(e.samples_per_prompt, e.temperature, max_new, e.batch_size, pass_reward, e.pass_threshold)
    return Evaluator(rows, tokenizer, functions, [s.label for s in specs], [s.weight for s in specs], settings)


def best_of(curve: list[dict]) -> dict:
    """{metric: {value, step}} of the best evaluation point for every metric (lower is better for
    losses, kl, truncation and length; higher for the rest)."""
    best: dict = {}
    for point in curve:
        for key, value in point.items():
            if not key.startswith("eval/") or key in ("eval/seconds", "eval/train_seconds"):
                continue
            low = lower_is_better(key) or key in ("eval/truncated", "eval/length")
            if key not in best or (value < best[key]["value"] if low else value > best[key]["value"]):
                best[key] = {"value": value, "step": point["step"]}
    return best
