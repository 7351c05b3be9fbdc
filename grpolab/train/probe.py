"""`grpolab probe CONFIG`: is there a learning signal before any training? num_generations completions
for N training prompts from the base model, scored by the run's own rewards and data code: each group's
pass rate, the groups whose rewards are all equal (advantage 0: TRL's frac_reward_zero_std), lengths,
truncation and the time of a round. `--write-filtered` keeps the prompts with 0 < pass rate < 1."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from grpolab.config import ConfigError
from grpolab.config.derive import derive
from grpolab.config.yaml_io import write_atomic
from grpolab.rewards.build import build_rewards
from grpolab.runtime import hardware
from grpolab.runtime.resolve import resolve
from grpolab.sampling import sampler
from grpolab.sampling.sampler import Sampling
from grpolab.train import model as models
from grpolab.train.setup import model_path, training_data

# A completion "passes" when its weighted reward is above this: for 0/1 rewards, when it is right.
PASS_ABOVE = 0.0
# generate() arguments that are not sampling settings, left out of the report's `settings`
NOT_SETTINGS = ("pad_token_id", "eos_token_id", "num_return_sequences", "num_beams")


@dataclass
class PromptResult:
    row: dict  # the dataset row (prompt and the columns rewards read)
    rewards: list[float]
    lengths: list[int]
    clipped: list[bool]

    @property
    def pass_rate(self) -> float:
        return sum(r > PASS_ABOVE for r in self.rewards) / len(self.rewards)

    @property
    def zero_spread(self) -> bool:
        # TRL: torch.isclose(std, 0) with its default tolerances (atol 1e-8)
        return len(self.rewards) < 2 or statistics.stdev(self.rewards) <= 1e-8


@dataclass
class ProbeReport:
    config: str
    model: str
    num_generations: int
    max_completion_length: int
    prompts: list[PromptResult]
    generation_seconds: float
    prompts_per_round: int
    settings: dict = field(default_factory=dict)

    @property
    def zero_spread_fraction(self) -> float:
        return sum(p.zero_spread for p in self.prompts) / len(self.prompts)

    @property
    def mixed_count(self) -> int:
        return sum(0 < p.pass_rate < 1 for p in self.prompts)

    def histogram(self) -> list[tuple[str, int]]:
        edges = [0, 0.25, 0.5, 0.75, 1.0]
        bins = [("0", lambda r: r == 0)]
        bins += [
            (f"({lo:g}, {hi:g}{')' if hi == 1 else ']'}", lambda r, lo=lo, hi=hi: lo < r <= hi and r < 1)
            for lo, hi in zip(edges, edges[1:])
        ]
        bins.append(("1", lambda r: r == 1))
        return [(label, sum(test(p.pass_rate) for p in self.prompts)) for label, test in bins]

    def to_dict(self) -> dict:
        lengths = [n for p in self.prompts for n in p.lengths]
        clipped = [c for p in self.prompts for c in p.clipped]
        per_prompt = self.generation_seconds / len(self.prompts)
        return {
            "config": self.config,
            "model": self.model,
            "prompts": len(self.prompts),
            "num_generations": self.num_generations,
            "pass_rate_histogram": dict(self.histogram()),
            "mean_pass_rate": sum(p.pass_rate for p in self.prompts) / len(self.prompts),
            "zero_spread_fraction": self.zero_spread_fraction,
            "mixed_prompts": self.mixed_count,
            "mean_completion_length": sum(lengths) / len(lengths),
            "truncation_rate": sum(clipped) / len(clipped),
            "max_completion_length": self.max_completion_length,
            "generation_seconds": round(self.generation_seconds, 3),
            "prompts_per_round": self.prompts_per_round,
            "seconds_per_generation_round": round(per_prompt * self.prompts_per_round, 3),
            "settings": self.settings,
        }


def run_probe(loader, prompts: int = 32, model: str | None = None, seed: int | None = None) -> ProbeReport:
    import transformers

    cfg = loader.config
    gen, G = cfg.generation, cfg.grpo.num_generations
    seed = cfg.training.seed if seed is None else seed
    name = model or model_path(cfg)
    resolved = resolve(cfg, hardware.probe())  # the device, weights and precision training would use
    transformers.utils.logging.disable_progress_bar()  # weight-loading bars
    tokenizer = models.load_tokenizer(name, cfg.model)
    lm = models.load_model(name, cfg.model, resolved.model_dtype)
    lm.to("cuda" if resolved.device == "cuda" else "cpu").eval()
    funcs, needs = build_rewards(cfg.rewards, gen.max_completion_length)
    dataset = training_data(cfg, tokenizer, lm, needs).train_set  # the rows training would see
    rows = dataset.shuffle(seed=seed).select(range(min(prompts, len(dataset)))).to_list()

    # The run's own sampling, as TRL generates; a few hundred sequences per generate() call.
    autocast = resolved.bf16
    sampling = Sampling.as_training(gen, G, batch_size=max(1, 256 // G), seed=seed, bf16_autocast=autocast)
    scored = sampler.sample_and_score(lm, tokenizer, rows, sampling, funcs)
    total = scored.weighted_total([r.weight for r in cfg.rewards])
    results = [  # a length counts the end token, as TRL's does
        PromptResult(dict(row), total[i * G : (i + 1) * G], [c.length for c in group], [c.truncated for c in group])
        for i, (row, group) in enumerate(zip(rows, scored.samples.groups))
    ]
    settings = {k: v for k, v in sampling.generate_kwargs(tokenizer).items() if k not in NOT_SETTINGS}
    settings["bf16_autocast"] = autocast
    per_round = derive(cfg, loader.target_world_size()).unique_prompts_per_round
    config = str(loader.config_path or loader.preset_path)
    return ProbeReport(
        config, name, G, gen.max_completion_length, results, scored.samples.seconds, per_round, settings
    )


def render(report: ProbeReport) -> str:
    d = report.to_dict()
    lines = [
        f"probe of {report.config}: {d['prompts']} prompts x {report.num_generations} completions from {report.model}",
        "  pass rate per prompt (fraction of its completions with reward > 0):",
    ]
    for label, count in report.histogram():
        lines.append(f"    {label:<12} {count:>5}  {'#' * round(40 * count / d['prompts'])}")
    lines += [
        f"  mean pass rate             {d['mean_pass_rate']:.1%}",
        f"  zero-spread groups         {d['zero_spread_fraction']:.1%}  (training's frac_reward_zero_std should "
        "start near this; such groups teach nothing)",
        f"  prompts with 0 < rate < 1  {d['mixed_prompts']} of {d['prompts']}",
        f"  mean completion length     {d['mean_completion_length']:.1f} tokens (max_completion_length "
        f"{report.max_completion_length})",
        f"  truncated                  {d['truncation_rate']:.1%}  (no end token within max_completion_length)",
        f"  generation                 {d['seconds_per_generation_round']:.2f} s per round of "
        f"{report.prompts_per_round} prompts x {report.num_generations} (this machine, one process)",
    ]
    if d["zero_spread_fraction"] > 0.5:
        lines.append(
            "  most groups carry no signal: raise grpo.num_generations or generation.temperature, or keep the "
            "mixed prompts with --write-filtered FILE"
        )
    return "\n".join(lines)


def write_filtered(report: ProbeReport, out, *, force: bool = False, config: str | None = None) -> tuple[Path, str]:
    """The prompts with 0 < pass rate < 1 as a .jsonl dataset (same columns as the training rows), and
    the config lines that train on it."""
    path = Path(out)
    if path.suffix.lower() != ".jsonl":
        raise ConfigError.of(
            "", "write the filtered prompts as a .jsonl file.", f"use {path.with_suffix('.jsonl')}", str(path)
        )
    kept = [p.row for p in report.prompts if 0 < p.pass_rate < 1]
    if not kept:
        raise ConfigError.of(
            "",
            f"no prompt has a pass rate strictly between 0 and 1 (of {len(report.prompts)} probed); nothing written.",
            "probe more prompts (--prompts), or raise generation.temperature / grpo.num_generations",
            str(path),
        )
    write_atomic(path, "".join(json.dumps(row, default=str) + "\n" for row in kept), overwrite=force)
    snippet = (
        f"data:\n  dataset: {path}\n  columns: {{}}  # the rows already carry the training columns\n"
        "  eval_split: null  # or a held-out .jsonl file: a file dataset has no built-in eval split"
    )
    if config:
        snippet += f"\n# or: grpolab config set {config} data.dataset={path} -o <new config>"
    return path, snippet
