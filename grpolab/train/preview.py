"""The dry run's reward check: one sampled batch scored by every reward, each one's mean and spread
printed, so a reward that is constant, failing or on another scale shows before training. A failing
reward is a bad spec (an unreachable URL, a garbage judge, a wrong shape): a ConfigError (exit 2)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from grpolab.config import ConfigError, Problem
from grpolab.rewards.build import describe
from grpolab.rewards.errors import RewardFunctionError
from grpolab.sampling import sampler
from grpolab.sampling.sampler import Sampling
from grpolab.train.tools import load_agent


@dataclass
class RewardStats:
    label: str
    weight: float
    values: list  # one per completion; None where the reward skipped it


def render(stats: list[RewardStats], reward_funcs, n_prompts: int, generations: int) -> str:
    lines = [f"reward check one sampled batch ({n_prompts} prompts x {generations} completions), every reward:"]
    width = max((len(s.label) for s in stats), default=0)
    for s, func in zip(stats, reward_funcs):
        scored = [v for v in s.values if v is not None]
        mean = statistics.fmean(scored) if scored else math.nan
        std = statistics.stdev(scored) if len(scored) > 1 else 0.0
        line = (
            f"  {s.label:<{width}}  x{s.weight:<4g} mean {mean:8.3f}  std {std:7.3f}  "
            f"min {min(scored, default=math.nan):7.3f}  max {max(scored, default=math.nan):7.3f}"
        )
        if len(s.values) > len(scored):
            line += f"  ({len(s.values) - len(scored)} None: skipped)"
        if std == 0 and len(scored) > 1:
            line += "  constant on this batch: no learning signal from it here"
        what = describe(func)
        lines.append(line + (f"\n  {'':<{width}}  {what}" if what else ""))
    return "\n".join(lines)


def dry_run_checks(cfg, model, tokenizer, reward_funcs, data, prompts: int = 2) -> list[RewardStats]:
    """What `--dry-run` checks after the plan: tools, environment and rollout import and have the
    signatures TRL calls; then `generations` completions for each of the first `prompts` rows
    (shuffled with the run's seed), sampled with the run's settings and scored by every reward as
    TRL calls them; a reward that fails is a ConfigError naming its entry, after all of them ran."""
    import torch

    for line in load_agent(cfg, tokenizer).describe():
        print(line)
    generations = max(2, min(cfg.grpo.num_generations, 8))
    dataset = data.train_set
    rows = dataset.shuffle(seed=cfg.training.seed).select(range(min(prompts, len(dataset)))).to_list()
    if model.device.type == "cpu" and torch.cuda.is_available() and cfg.cluster.device != "cpu":
        model.to("cuda")  # as training would place it
    sampling = Sampling.as_training(cfg.generation, generations, seed=cfg.training.seed)
    scored = sampler.sample_and_score(model, tokenizer, rows, sampling, reward_funcs, tolerate=(RewardFunctionError,))
    problems = [
        Problem(f"rewards[{i}]", f"failed on a sampled batch in the dry run: {exc}", "fix the reward or its service")
        for i, exc in sorted(scored.errors.items())
    ]
    if problems:
        raise ConfigError(problems)
    stats = [
        RewardStats(func.__name__, spec.weight, values)
        for func, spec, values in zip(reward_funcs, cfg.rewards, scored.values)
    ]
    print(render(stats, reward_funcs, len(rows), generations), flush=True)
    return stats
