"""The dry run's reward check: sample one real batch of completions from the model and score it
with every configured reward, printing the mean and spread of each, so a reward that is
constant (no learning signal), failing, or on a different scale shows before training.

A reward that fails here is a bad spec (an unreachable URL, a judge answering garbage, a
function returning the wrong shape): it becomes a ConfigError naming the entry (exit 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from grpolab.config import ConfigError, Problem
from grpolab.rewards.build import describe
from grpolab.rewards.errors import RewardFunctionError


@dataclass
class RewardStats:
    label: str
    weight: float
    values: list

    @property
    def scored(self) -> list[float]:
        return [v for v in self.values if v is not None]

    @property
    def mean(self) -> float:
        s = self.scored
        return sum(s) / len(s) if s else math.nan

    @property
    def std(self) -> float:
        s = self.scored
        if len(s) < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in s) / (len(s) - 1))


def sample_batch(cfg, model, tokenizer, dataset, prompts: int, generations: int):
    """(rows, prompts, completions, completion_ids): `generations` sampled completions for each
    of the first `prompts` rows, with the run's sampling settings."""
    import torch

    gen = cfg.generation
    rows = dataset.shuffle(seed=cfg.training.seed).select(range(min(prompts, len(dataset)))).to_list()
    device = next(model.parameters()).device
    if device.type == "cpu" and torch.cuda.is_available() and cfg.cluster.device != "cpu":
        model.to("cuda")
        device = next(model.parameters()).device
    texts = [
        tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        if isinstance(r["prompt"], list)
        else r["prompt"]
        for r in rows
    ]
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    enc = {k: v.to(device) for k, v in enc.items()}
    torch.manual_seed(cfg.training.seed)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=gen.temperature,
            top_p=gen.top_p,
            top_k=gen.top_k or None,
            min_p=gen.min_p,
            repetition_penalty=gen.repetition_penalty,
            max_new_tokens=gen.max_completion_length,
            num_return_sequences=generations,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    model.train(was_training)
    ids_all = out[:, enc["input_ids"].shape[1] :].tolist()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    prompt_list, completions, completion_ids, batch_rows = [], [], [], []
    for j, ids in enumerate(ids_all):
        row = rows[j // generations]
        cut = ids.index(eos) if eos in ids else len(ids)
        ids = ids[:cut]
        while ids and pad is not None and ids[-1] == pad:
            ids = ids[:-1]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        prompt_list.append(row["prompt"])
        completions.append([{"role": "assistant", "content": text}] if isinstance(row["prompt"], list) else text)
        completion_ids.append(ids)
        batch_rows.append(row)
    return batch_rows, prompt_list, completions, completion_ids


def score_batch(cfg, reward_funcs, rows, prompts, completions, completion_ids) -> list[RewardStats]:
    """Every reward on the batch, as TRL calls them; a failing one is a ConfigError naming its entry."""
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"} if rows else {}
    stats, problems = [], []
    for i, (func, spec) in enumerate(zip(reward_funcs, cfg.rewards)):
        try:
            values = func(prompts, completions, completion_ids=completion_ids, **columns)
        except RewardFunctionError as exc:
            problems.append(
                Problem(
                    f"rewards[{i}]",
                    f"failed on a sampled batch in the dry run: {exc}",
                    "fix the reward or its service",
                )
            )
            continue
        stats.append(RewardStats(func.__name__, spec.weight, values))
    if problems:
        raise ConfigError(problems)
    return stats


def render(stats: list[RewardStats], reward_funcs, n_prompts: int, generations: int) -> str:
    lines = [f"reward check one sampled batch ({n_prompts} prompts x {generations} completions), every reward:"]
    width = max((len(s.label) for s in stats), default=0)
    for s, func in zip(stats, reward_funcs):
        skipped = len(s.values) - len(s.scored)
        line = (
            f"  {s.label:<{width}}  x{s.weight:<4g} mean {s.mean:8.3f}  std {s.std:7.3f}  "
            f"min {min(s.scored, default=math.nan):7.3f}  max {max(s.scored, default=math.nan):7.3f}"
        )
        if skipped:
            line += f"  ({skipped} None: skipped)"
        if s.std == 0 and len(s.scored) > 1:
            line += "  constant on this batch: no learning signal from it here"
        what = describe(func)
        lines.append(line + (f"\n  {'':<{width}}  {what}" if what else ""))
    return "\n".join(lines)


def dry_run_checks(cfg, model, tokenizer, reward_funcs, data, prompts: int = 2) -> list[RewardStats]:
    """What `--dry-run` checks after the plan: tools, environment and rollout import and have the
    signatures TRL calls; then one sampled batch scored by every reward. Prints both."""
    from grpolab.train.tools import load_agent

    agent = load_agent(cfg, tokenizer)
    for line in agent.describe():
        print(line)
    generations = max(2, min(cfg.grpo.num_generations, 8))
    batch = sample_batch(cfg, model, tokenizer, data.train_set, prompts, generations)
    stats = score_batch(cfg, reward_funcs, *batch)
    print(render(stats, reward_funcs, min(prompts, len(data.train_set)), generations), flush=True)
    return stats
