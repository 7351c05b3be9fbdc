"""`grpolab doctor RUN_DIR`: read a finished (or crashed) run and say what to change next.
A run directory has resolved_config.yaml, run_info.json, metrics.jsonl (one JSON object per
logged step, TRL's metric names) and summary.json; with `grpo.log_completions: true` TRL also
writes completions/completions_NNNNN.parquet. Each finding carries its evidence (metric, values,
steps), why it matters, and the edit to try as `--set` lines; every limit comes from
grpolab.tune.thresholds. Reading a run never imports torch, transformers or trl."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.derive import derive
from grpolab.config.files import based_text
from grpolab.config.keys import lookup, split_key
from grpolab.config.loader import schema_default
from grpolab.config.rules import out_of_range, range_text
from grpolab.config.yaml_edit import set_with_comment
from grpolab.config.yaml_io import dump_yaml, inline_yaml, parse_yaml_text, read_yaml_file, to_plain
from grpolab.experiment.runs import load_run as read_run
from grpolab.run import metrics
from grpolab.run.record import SUMMARY, read_json
from grpolab.run.run_dir import RESOLVED_CONFIG
from grpolab.runtime.hub import context_length, model_config

from .edits import annotate_changes
from .memory import resolve_shape
from .thresholds import RANGE_NAMES, THRESHOLDS, limit

# Findings in the order a user should act on them: a broken run first, tuning last.
ORDER = tuple(
    "divergence constant_reward clipped_completions no_learning_signal kl_growth entropy_collapse reward_hacking "
    "lr_too_low small_batch range_learning_rate range_beta range_num_generations".split()
)


@dataclass
class Finding:
    id: str
    title: str
    evidence: list[str]  # metric, values, steps
    why: str
    edits: dict = field(default_factory=dict)  # dotted key -> new value: the change --write-config makes
    alternatives: list[str] = field(default_factory=list)  # other things to try, as --set lines or actions
    thresholds: list[str] = field(default_factory=list)  # names in THRESHOLDS this finding used

    def set_lines(self) -> list[str]:
        return [f"--set {key}={inline_yaml(value)}" for key, value in self.edits.items()]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "evidence": self.evidence,
            "why": self.why,
            "edits": self.edits,
            "set": self.set_lines(),
            "alternatives": self.alternatives,
            "thresholds": {name: THRESHOLDS[name].value for name in self.thresholds},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Finding:
        """A finding as to_dict wrote it (a run's record keeps the guard's findings this way)."""
        lists = {key: list(d.get(key) or []) for key in ("evidence", "alternatives", "thresholds")}
        return cls(d["id"], d.get("title", ""), why=d.get("why", ""), edits=dict(d.get("edits") or {}), **lists)

    def body(self) -> list[str]:
        """Evidence, why, the edit and the alternatives, one line each, as doctor prints them."""
        lines = [f"      evidence  {item}" for item in self.evidence] + [f"      why       {self.why}"]
        if self.edits:
            lines.append(f"      edit      {' '.join(self.set_lines())}")
        return lines + [f"      or        {alt}" for alt in self.alternatives]


@dataclass
class Run:
    path: Path
    metrics: list[dict]
    summary: dict
    info: dict
    loader: GRPOConfigLoader | None
    config_error: str | None
    torn_lines: int
    problems: list[str] = field(default_factory=list)  # record fields of the wrong type, named

    @property
    def config(self):
        return self.loader.config if self.loader is not None else None

    @property
    def world_size(self) -> int:
        value = self.info.get("world_size")
        return value if isinstance(value, int) and value >= 1 else 1


# --------------------------------------------------------------------------- reading a run
def load_run(run_dir) -> Run:
    """The run through the one run reader (grpolab.experiment.runs: typed records, a field of the
    wrong type named, never met later), with its resolved config loaded where it still loads."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError.of("", "no such run directory.", "pass a folder made by `grpolab train`", str(path))
    record = read_run(path)
    _, torn = metrics.read_counted(metrics.path_of(path))  # a torn last line of a killed run is counted, not an error
    loader, error = None, None
    if (path / RESOLVED_CONFIG).is_file():
        try:
            loader = GRPOConfigLoader(config_path=path / RESOLVED_CONFIG, world_size=record.info.world_size)
        except ConfigError as exc:
            error = str(exc)
    summary = record.summary.to_dict() if read_json(path / SUMMARY) else {}
    return Run(path, record.metrics(), summary, record.info.to_dict(), loader, error, torn, record.problems)


def series(run: Run, key: str) -> list[tuple[float, float]]:
    return metrics.series(run.metrics, key)


def completions_sample(run_dir: Path, n: int = 3) -> list[dict]:
    """A few saved completions (TRL's completions/*.parquet with log_completions, or completions.jsonl)."""
    saved = metrics.read_completions(run_dir)
    files = sorted((run_dir / "completions").glob("completions_*.parquet"))
    if saved or not files:
        return saved[-n:]
    try:
        import pyarrow.parquet as pq

        return pq.read_table(files[-1]).to_pylist()[:n]
    except Exception:  # an unreadable or half-written file: the finding stands without a sample
        return []


def _thirds(values: list[float]) -> tuple[float, float]:
    k = max(1, len(values) // 3)
    return sum(values[:k]) / k, sum(values[-k:]) / k


def _show(points: list[tuple[int, float]], digits: int = 3) -> str:
    """'0.88 (step 1), 0.95 (2), ... 0.91 (10)': the first three and last three points."""
    parts = [f"{value:.{digits}g} ({'step ' if i == 0 else ''}{step})" for i, (step, value) in enumerate(points)]
    return ", ".join(parts if len(parts) <= 6 else [*parts[:3], "...", *parts[-3:]])


def _span(points) -> str:
    return f"{len(points)} logged steps ({points[0][0]}-{points[-1][0]})"


def _g(value: float) -> str:
    return inline_yaml(float(value)) if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- edits that stay valid
def scale_batch_edits(cfg, k: int) -> dict:
    """Grow a generation round k-fold without going off-policy: gradient_accumulation_steps and the
    round (generation_batch_size, or steps_per_generation) grow together, so each round still feeds
    the same number of optimizer steps and divisibility by per_device_train_batch_size x world size
    and by num_generations is kept."""
    t, g = cfg.training, cfg.grpo
    edits = {"training.gradient_accumulation_steps": t.gradient_accumulation_steps * k}
    if g.generation_batch_size != "auto":
        edits["grpo.generation_batch_size"] = g.generation_batch_size * k
    elif g.steps_per_generation is not None:
        edits["grpo.steps_per_generation"] = g.steps_per_generation * k
    return edits


def generations_edits(cfg, new_g: int) -> dict | None:
    """num_generations -> new_g, keeping the unique prompts per round (None when that cannot be done
    by a whole factor)."""
    g = cfg.grpo.num_generations
    if new_g % g == 0:
        return {"grpo.num_generations": new_g, **scale_batch_edits(cfg, new_g // g)}
    b = cfg.grpo.generation_batch_size
    return {"grpo.num_generations": new_g} if b != "auto" and b % new_g == 0 else None


def validate_edits(run: Run, edits: dict) -> str | None:
    """None when the edits give a valid config for the run's world size, else the problem."""
    if run.loader is None or not edits:
        return None
    try:
        GRPOConfigLoader(config_path=run.path / RESOLVED_CONFIG, world_size=run.world_size).update_params(edits)
    except ConfigError as exc:
        return str(exc)
    return None


def _models(run: Run) -> list[str]:
    """The run's model as recorded, then as its config names it."""
    return [str(m) for m in (run.info.get("model"), run.config.model.name_or_path if run.config else None) if m]


# --------------------------------------------------------------------------- the findings
def find_divergence(run: Run) -> Finding | None:
    keys = ("loss", "grad_norm", "reward", "kl", "entropy")
    bad = [
        (r.get("step", 0), k)
        for r in run.metrics
        for k in keys
        if isinstance(v := r.get(k), float) and not math.isfinite(v)
    ]
    evidence, thresholds = [], []
    if bad:
        steps, names = sorted({s for s, _ in bad}), sorted({k for _, k in bad})
        evidence.append(f"non-finite {', '.join(names)} at step(s) {', '.join(map(str, steps[:8]))}")
    error = str(run.info.get("error") or "")
    if "NaN" in error or "diverged" in error:
        evidence.append(f"run_info.json: status {run.info.get('status')}: {error}")
    grad = series(run, "grad_norm")
    if len(grad) >= 4:
        start = sorted(v for _, v in grad[:3])[1]
        peak_step, peak = max(grad[3:], key=lambda p: p[1])
        if start > 0 and peak / start > limit("grad_norm_spike"):
            evidence.append(
                f"grad_norm rose from {start:.3g} (median of the first 3 logged steps) to {peak:.3g} at step "
                f"{peak_step}: {peak / start:.0f}x > {limit('grad_norm_spike'):g}x"
            )
            thresholds.append("grad_norm_spike")
    reward = series(run, "reward")
    if len(reward) >= 2 * limit("min_points"):  # a collapse must last: the whole last third of the run
        best_step, best = max(reward, key=lambda p: p[1])
        _, late = _thirds([v for _, v in reward])
        k = max(1, len(reward) // 3)
        if best > 0.1 and best_step < reward[-k][0] and (best - late) / best > limit("reward_collapse"):
            evidence.append(
                f"reward fell from its best {best:.3g} (step {best_step}) to a mean of {late:.3g} over the last "
                f"{k} logged steps: {(best - late) / best:.0%} lost > {limit('reward_collapse'):.0%}"
            )
            thresholds.append("reward_collapse")
    return divergence(run, evidence, thresholds) if evidence else None


def divergence(run: Run, evidence: list[str], thresholds: list[str]) -> Finding:
    """The divergence finding on this evidence: a far smaller step, and what else holds the policy."""
    cfg, edits, alternatives = run.config, {}, []
    if cfg is not None:
        edits["training.learning_rate"] = min(cfg.training.learning_rate / 10, limit("lr_range_high"))
        if cfg.training.max_grad_norm == 0:
            alternatives.append("--set training.max_grad_norm=1.0  (gradient clipping is off)")
        if cfg.grpo.beta == 0:
            alternatives.append("--set grpo.beta=0.04  (a KL penalty holds the policy near the reference model)")
    return Finding(
        "divergence",
        "training diverged (NaN, exploding gradients or a collapsed reward)",
        evidence,
        "after a divergence the weights are garbage: later steps learn nothing and checkpoints past it are useless; "
        "the usual cause is a step size too large for the model",
        edits,
        alternatives,
        thresholds,
    )


def find_constant_reward(run: Run) -> Finding | None:
    reward, std = series(run, "reward"), series(run, "reward_std")
    values = [v for _, v in reward]
    if not std or not values or max(max(v for _, v in std), max(values) - min(values)) > limit("constant_reward_std"):
        return None
    value = reward[0][1]
    evidence = [f"reward {value:.4g} at every one of {_span(reward)}; reward_std 0 throughout"]
    cfg = run.config
    if cfg is not None:
        from grpolab.rewards.build import BUILTIN_COLUMNS

        reads = {s.name: f" reads column(s) {', '.join(c)}" for s in cfg.rewards if (c := BUILTIN_COLUMNS.get(s.name))}
        parts = [f"`{s.label}` (weight {s.weight:g}){reads.get(s.name, '')}" for s in cfg.rewards]
        data = f"data: {cfg.data.dataset}, columns {cfg.data.columns or '{}'}"
        evidence.append("rewards: " + "; ".join(parts) + "; " + data)
    sample = completions_sample(run.path)
    for row in sample:
        text = json.dumps({k: v for k, v in row.items() if k != "step"}, default=str)
        evidence.append("sample: " + (text if len(text) < 300 else text[:300] + "..."))
    if not sample:
        evidence.append("no completions saved; rerun with --set grpo.log_completions=true to see them")
    title = "the reward is 0 for every completion" if value == 0 else f"the reward is {value:.4g} for every completion"
    return Finding(
        "constant_reward",
        title,
        evidence,
        "every completion gets the same reward, so every advantage is 0 and nothing is learned; the reward "
        "function or the column it reads is wrong (or the task is out of reach for this model), which no "
        "hyperparameter fixes",
        {},
        [
            "check the reward on a few prompts first: grpolab probe CONFIG --prompts 8",
            "check `data.columns` maps the answer column the reward reads",
            "--set grpo.log_completions=true  (to see what the model writes)",
        ],
        ["constant_reward_std"],
    )


def find_no_signal(run: Run) -> Finding | None:
    zero = series(run, "frac_reward_zero_std")
    if not zero or (mean := fmean([v for _, v in zero])) <= limit("zero_std_frac"):
        return None
    cfg, edits, alternatives = run.config, {}, []
    if cfg is not None:
        g, temp = cfg.grpo.num_generations, cfg.generation.temperature
        raised = generations_edits(cfg, 2 * g) if 2 * g <= limit("generations_range_high") else None
        if raised and validate_edits(run, raised) is None:
            edits = raised
            alternatives.append(f"--set generation.temperature={_g(round(temp + 0.3, 2))}")
        else:
            edits = {"generation.temperature": round(temp + 0.3, 2)}
        alternatives.append(
            "keep only prompts the model sometimes solves: grpolab probe CONFIG --write-filtered data/filtered.jsonl"
        )
    return Finding(
        "no_learning_signal",
        "no learning signal: most groups give every completion the same reward",
        [f"frac_reward_zero_std mean {mean:.2f} > {limit('zero_std_frac'):g} over {_span(zero)}: {_show(zero, 2)}"],
        "a group whose completions are all right or all wrong has zero advantage and contributes no gradient; "
        "more completions per prompt or more sampling diversity make mixed groups likelier",
        edits,
        alternatives,
        ["zero_std_frac"],
    )


def find_clipped(run: Run) -> Finding | None:
    clipped = series(run, "completions/clipped_ratio")
    if not clipped or (mean := fmean([v for _, v in clipped])) <= limit("clipped_ratio"):
        return None
    evidence = [
        f"completions/clipped_ratio mean {mean:.2f} > {limit('clipped_ratio'):g} over {_span(clipped)}: "
        f"{_show(clipped, 2)}"
    ]
    length = series(run, "completions/mean_length")
    cfg, edits, alternatives = run.config, {}, []
    if cfg is not None:
        mcl = cfg.generation.max_completion_length
        if length:
            evidence.append(
                f"completions/mean_length {fmean([v for _, v in length]):.1f} tokens against "
                f"generation.max_completion_length {mcl}"
            )
        # the model's positions from its config.json (its folder or the Hub cache), or None
        context = next((n for m in _models(run) if (n := context_length(model_config(m)))), None)
        new = 2 * mcl if context is None else min(2 * mcl, context // 2)
        if new > mcl:
            edits["generation.max_completion_length"] = new
        if not cfg.grpo.mask_truncated_completions:
            alternatives.append(
                "--set grpo.mask_truncated_completions=true  (leave cut-off completions out of the loss)"
            )
        alternatives.append(
            "add the overlong penalty to `rewards:`: `- {name: length_penalty, weight: 1.0}` (DAPO's soft punishment)"
        )
        if not edits and not cfg.grpo.mask_truncated_completions:  # the model's context leaves no room
            edits = {"grpo.mask_truncated_completions": True}
    return Finding(
        "clipped_completions",
        "completions are cut off at max_completion_length",
        evidence,
        "a cut-off completion is rewarded for an answer it never finished, so the reward mostly measures the "
        "length limit; a model that never ends would also keep every completion at the maximum cost",
        edits,
        alternatives,
        ["clipped_ratio"],
    )


def find_entropy_collapse(run: Run) -> Finding | None:
    entropy = series(run, "entropy")
    if len(entropy) < limit("min_points") or entropy[0][1] <= 0:
        return None
    first, last = entropy[0][1], entropy[-1][1]
    if last / first >= limit("entropy_collapse_ratio") or last >= limit("entropy_floor"):
        return None
    cfg, edits, alternatives = run.config, {}, []
    if cfg is not None:
        if cfg.grpo.beta == 0:
            edits["grpo.beta"] = 0.04
        else:
            edits["training.learning_rate"] = min(cfg.training.learning_rate / 2, limit("lr_range_high"))
        alternatives += [
            f"--set generation.temperature={_g(round(cfg.generation.temperature + 0.2, 2))}",
            "--set grpo.entropy_coef=0.01  (an entropy bonus in the loss)",
        ]
    return Finding(
        "entropy_collapse",
        "entropy collapsed: sampling has become (almost) deterministic",
        [
            f"entropy {first:.3g} -> {last:.3g} nats/token ({last / first:.1%} of the start < "
            f"{limit('entropy_collapse_ratio'):.0%}, and < {limit('entropy_floor'):g}) over {_span(entropy)}: "
            f"{_show(entropy)}"
        ],
        "with no diversity the completions of a group coincide, the group's rewards coincide and learning "
        "stops; a KL penalty or a smaller step keeps the policy from sharpening this fast",
        edits,
        alternatives,
        ["entropy_collapse_ratio", "entropy_floor", "min_points"],
    )


def find_kl_growth(run: Run) -> Finding | None:
    kl = series(run, "kl")
    if len(kl) < limit("min_points"):
        return None
    values = [v for _, v in kl]
    q = max(1, len(values) // 4)
    second = fmean(values[q : 2 * q]) if len(values) >= 2 * q else values[0]
    late, last = fmean(values[-q:]), values[-1]
    growth = late / second if second > 0 else math.inf
    if not (last > limit("kl_max") and (growth > limit("kl_growth") or last > limit("kl_extreme"))):
        return None
    cfg, edits, alternatives = run.config, {}, []
    if cfg is not None:
        beta, lr = cfg.grpo.beta, cfg.training.learning_rate
        if beta * 2 <= limit("beta_range_high"):
            edits["grpo.beta"] = beta * 2
            alternatives.append(f"--set training.learning_rate={_g(min(lr / 2, limit('lr_range_high')))}")
        else:
            edits["training.learning_rate"] = min(lr / 2, limit("lr_range_high"))
    return Finding(
        "kl_growth",
        "KL to the reference model keeps growing",
        [
            f"kl {values[0]:.3g} -> {last:.3g} (> {limit('kl_max'):g}; extreme above {limit('kl_extreme'):g}); "
            f"last-quarter mean {late:.3g} is "
            f"{growth:.1f}x the second quarter's {second:.3g} (> {limit('kl_growth'):g}x) over {_span(kl)}: "
            f"{_show(kl)}"
        ],
        "a KL that keeps multiplying means the penalty is too weak for the step size: the policy drifts from the "
        "reference model and usually degrades outside what the reward checks",
        edits,
        alternatives,
        ["kl_max", "kl_growth", "kl_extreme", "min_points"],
    )


def find_lr_too_low(run: Run, zero_signal: bool, constant: bool) -> Finding | None:
    lr, reward = series(run, "learning_rate"), series(run, "reward")
    if constant or zero_signal or not lr or len(reward) < limit("min_points"):
        return None
    peak = max(v for _, v in lr)
    first, last = _thirds([v for _, v in reward])
    if peak >= limit("lr_floor") or last - first >= limit("reward_flat"):
        return None
    cfg = run.config
    edits = {"training.learning_rate": min(cfg.training.learning_rate * 10, limit("lr_range_high"))} if cfg else {}
    params = _model_parameters(run)
    size = f" for a {params / 1e6:.1f}M-parameter model" if params else ""
    return Finding(
        "lr_too_low",
        f"reward flat with a tiny update size: the learning rate is too low{size}",
        [
            f"learning_rate at most {peak:.3g} < {limit('lr_floor'):g} (Adam moves each weight by about this "
            "much per step)",
            f"reward {first:.3f} (first third) -> {last:.3f} (last third): +{last - first:.3f} < "
            f"{limit('reward_flat'):g} over {_span(reward)}",
        ],
        "the groups do carry signal (frac_reward_zero_std is low), but each step moves the weights too little "
        "for the reward to change within the run",
        edits,
        [],
        ["lr_floor", "reward_flat", "min_points"],
    )


def _model_parameters(run: Run) -> int | None:
    """Parameter count from the model's config.json, when its shape can be read (no torch)."""
    for model in _models(run):
        try:
            return resolve_shape(model).parameters
        except (ConfigError, OSError):
            continue
    return None


def find_reward_hacking(run: Run) -> Finding | None:
    reward = series(run, "reward")
    if len(reward) < limit("min_points"):
        return None
    first, last = _thirds([v for _, v in reward])
    if last - first <= limit("reward_gain"):
        return None
    evals = series(run, "eval/accuracy")
    ev = run.summary.get("eval") if isinstance(run.summary.get("eval"), dict) else {}
    before, after = ev.get("accuracy_before"), ev.get("accuracy_after")
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        start, end, where = float(before), float(after), "summary.json accuracy_before -> accuracy_after"
    elif len(evals) >= 2:
        start, end, where = evals[0][1], evals[-1][1], f"eval/accuracy steps {evals[0][0]} -> {evals[-1][0]}"
    else:
        return None
    if start - end <= limit("eval_drop"):
        return None
    cfg, edits, alternatives = run.config, {}, []
    if cfg is not None:
        edits["grpo.beta"] = 0.04 if cfg.grpo.beta == 0 else min(cfg.grpo.beta * 2, limit("beta_range_high"))
        alternatives.append(f"--set training.learning_rate={_g(cfg.training.learning_rate / 2)}")
        alternatives.append("make the reward check the task itself (e.g. numeric_match on the answer column)")
    return Finding(
        "reward_hacking",
        "reward rises while held-out accuracy falls (reward hacking)",
        [
            f"reward {first:.3f} -> {last:.3f} (+{last - first:.3f} > {limit('reward_gain'):g}) over {_span(reward)}",
            f"held-out accuracy {start:.1%} -> {end:.1%} ({(end - start) * 100:+.1f} points; a fall > "
            f"{limit('eval_drop') * 100:g}) from {where}",
        ],
        "the policy found a way to score that the held-out check does not reward: it optimises the reward, not "
        "the task; a KL penalty keeps it near the reference model while the reward is fixed",
        edits,
        alternatives,
        ["reward_gain", "eval_drop", "min_points"],
    )


def find_small_batch(run: Run) -> Finding | None:
    cfg = run.config
    if cfg is None:
        return None
    d = derive(cfg, run.world_size)
    prompts, effective = d.unique_prompts_per_round, d.effective_batch_size
    low_p, low_b = limit("min_prompts_per_step"), limit("min_effective_batch")
    if prompts >= low_p and effective >= low_b:
        return None
    k = max(math.ceil(low_p / max(prompts, 1)), math.ceil(low_b / max(effective, 1)))
    t = cfg.training
    return Finding(
        "small_batch",
        "too few prompts per step to estimate a group advantage",
        [
            f"{prompts} unique prompt(s) per round (< {low_p:g}) and effective batch {effective} "
            f"(= {t.per_device_train_batch_size} x {t.gradient_accumulation_steps} x {run.world_size}; "
            f"minimum {low_b:g})"
        ],
        "each update averages over these few prompts, so one easy or impossible prompt decides it; raising "
        "gradient_accumulation_steps adds prompts per step without more memory per device",
        scale_batch_edits(cfg, k),
        [f"--set training.per_device_train_batch_size={t.per_device_train_batch_size * k}  (faster, more memory)"],
        ["min_prompts_per_step", "min_effective_batch"],
    )


# key -> why its range matters. The finding is range_<the key's last part>; the ranges themselves are
# config/rules.py's RECOMMENDED (the same check `config validate` warns with), mirrored in THRESHOLDS.
RANGE_FINDINGS = {
    "training.learning_rate": "below it the policy barely moves; above it updates overshoot and the run tends "
    "to diverge",
    "grpo.beta": "a tiny beta costs a reference-model forward pass for no effect; a large one pins the policy to "
    "the reference model so it cannot learn",
    "grpo.num_generations": "the advantage is a reward minus its group's mean: with few completions that mean is "
    "noisy, with many each prompt costs a lot of generation",
}


def find_ranges(run: Run) -> list[Finding]:
    cfg = run.config
    if cfg is None:
        return []
    found = []
    for key, value, rec in out_of_range(cfg):
        name = f"range_{key.rsplit('.', 1)[1]}"  # range_learning_rate, range_beta, range_num_generations
        names = [f"{RANGE_NAMES[key]}_range_{end}" for end in ("low", "high")]
        target = type(value)(min(max(value, rec.low), rec.high))
        edits = (generations_edits(cfg, target) if key == "grpo.num_generations" else None) or {key: target}
        no_kl = ["--set grpo.beta=0  (no KL, no reference model)"] if key == "grpo.beta" and value < rec.low else []
        title, evidence = f"{key} is outside the recommended range", [f"{key} {range_text(value, rec)}"]
        found.append(Finding(name, title, evidence, RANGE_FINDINGS[key], edits, no_kl, names))
    return found


def diagnose(run: Run) -> list[Finding]:
    diverged, constant = find_divergence(run), find_constant_reward(run)
    signal = None if constant else find_no_signal(run)
    lr_too_low = find_lr_too_low(run, zero_signal=signal is not None, constant=constant is not None)
    found = [diverged, constant, signal, find_clipped(run), find_kl_growth(run), find_entropy_collapse(run)]
    found += [find_reward_hacking(run), lr_too_low, find_small_batch(run), *find_ranges(run)]
    return checked(run, [f for f in found if f])


def checked(run: Run, findings: list[Finding]) -> list[Finding]:
    """The findings in ORDER; an edit that would not validate is shown as an alternative, never written."""
    for finding in findings:
        if problem := validate_edits(run, finding.edits):
            finding.alternatives.insert(0, " ".join(finding.set_lines()) + f"  (not valid as is: {problem})")
            finding.edits = {}
    return sorted(findings, key=lambda f: ORDER.index(f.id))


# --------------------------------------------------------------------------- report
def notes(run: Run) -> list[str]:
    """What looks wrong in a GRPO run but is not: said once so nobody tunes against it. First, what
    in the run's records could not be read (file and field): the findings leave those values out."""
    out = [f"unreadable record, left out: {problem}" for problem in run.problems]
    loss = [v for _, v in series(run, "loss")]
    if loss and max(abs(v) for v in loss) < 0.05:
        out.append(
            f"loss stays near 0 (|loss| <= {max(abs(v) for v in loss):.2g}): expected for GRPO, whose advantages are "
            "centred per group, so the mean policy term is ~0 while its gradient is not; watch reward instead"
        )
    if run.config is not None and run.config.grpo.beta == 0 and not series(run, "kl"):
        out.append("kl is not logged: grpo.beta is 0, so TRL loads no reference model and computes no KL")
    return out


def render(run: Run, findings: list[Finding]) -> str:
    status = "unreadable" if run.problems else run.info.get("status", "unknown")
    steps = series(run, "reward")
    head = f"{run.path}  (status {status}, {len(run.metrics)} metric records"
    head += f", {len(steps)} with a reward" if steps else ""
    head += f", {run.torn_lines} unreadable line(s) skipped)" if run.torn_lines else ")"
    lines = [head]
    if run.config_error:
        lines.append(
            f"  note: resolved_config.yaml does not load any more ({run.config_error}); config checks skipped"
        )
    if not run.metrics:
        lines.append("  no metrics logged yet (metrics.jsonl is missing or empty)")
    lines += [f"  note: {note}" for note in notes(run)]
    if not findings:
        lines.append("  no findings: nothing in the logged metrics crosses a threshold (grpolab doctor --thresholds)")
    for i, f in enumerate(findings, 1):
        lines += [f"  [{i}] {f.id}: {f.title}", *f.body()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the next experiment
def _source_loader(run: Run) -> tuple[GRPOConfigLoader, str]:
    """The loader the next config is written from: the run's own config file with the run's overrides
    (its comments kept) when that still reproduces the run, else resolved_config.yaml."""
    resolved = run.path / "resolved_config.yaml"
    if original := run.info.get("config_file"):
        path = Path(original)
        if not path.is_absolute() and run.info.get("cwd"):
            path = Path(run.info["cwd"]) / path
        file = run.path / "overrides.yaml"
        try:
            overrides = to_plain(read_yaml_file(file), str(file)) if file.is_file() else {}
            loader = GRPOConfigLoader(config_path=path, overrides=overrides or None, world_size=run.world_size)
            if path.is_file() and loader.to_dict() == run.loader.to_dict():
                return loader, str(path)
        except (ConfigError, OSError):
            pass
    return GRPOConfigLoader(config_path=resolved, world_size=run.world_size), str(resolved)


def write_next_config(
    run: Run, findings: list[Finding], out, *, force: bool = False, full: bool = False
) -> tuple[Path, list[Finding]]:
    """Write the next experiment: the chosen findings' edits on top of the run's config. By default a
    minimal file, `base: <the run's config file>` plus the run's own --set values and the changed keys,
    each marked `# Changed from OLD: <finding>`; with `full` (or where the loader has no `base:`) a full
    copy of the run's config file with the same marks. Returns the path and the findings applied."""
    from grpolab.config.yaml_io import edit_lock, write_atomic

    chosen, where = [f for f in findings if f.edits], str(run.path)
    if not chosen:
        problem = "no finding has an edit to write" + (" (there are no findings)" if not findings else "")
        raise ConfigError.of("", problem, "act on the findings' suggestions by hand", where)
    if run.loader is None:
        raise ConfigError.of("", "resolved_config.yaml does not load; cannot write a config", None, where)
    out = Path(out)
    # Under OUT's lock: written over the run's own config (--force), it is read and rewritten as
    # one edit, and write_atomic refuses if it changed since it was read.
    with edit_lock(out):
        if out.exists() and not force:
            fix = "choose a new file name, or pass --force"
            raise ConfigError.of("", "file exists; refusing to overwrite it", fix, str(out))
        edits, reason = {}, {}
        for f in chosen:
            for key, value in f.edits.items():
                if key not in edits:  # the higher-priority finding wins a key
                    edits[key], reason[key] = value, f.id
        header = [
            f"grpolab doctor: next experiment for {run.path}",
            "changed keys are marked with the finding that asks for them:",
            *[f"  {f.id}: {f.title}" for f in chosen],
        ]
        loader, source = _source_loader(run)
        if full:
            text = _full_text(run, loader, source, edits, reason, header)
        else:
            text = _minimal_text(run, loader, Path(source), edits, reason, header, out)
        write_atomic(out, text, overwrite=force)
        GRPOConfigLoader(config_path=out, world_size=run.world_size)  # the file written is a valid config
        return out, chosen


def _minimal_text(run: Run, loader, source: Path, edits: dict, reason: dict, header, out: Path) -> str:
    nxt = loader.with_overrides(edits)  # validated here: nothing is written when the edits do not fit
    GRPOConfigLoader.from_dict(nxt.to_dict(), world_size=run.world_size)
    was = run.loader.to_dict()

    def comment(key: str) -> str:
        if key in reason:
            return f"# Changed from {inline_yaml(lookup(was, key))}: {reason[key]}"
        return "# as the run had it (its --set or flags)"

    lines = [*header, "`base:` is the run's config; the rest is what the run and this experiment change in it."]
    # A finding's key is written even where it returns to the base file's value.
    return based_text(nxt, source, out, "\n".join(lines), comment, keep=reason)


def _full_text(run: Run, loader, source: str, edits: dict, reason: dict, header) -> str:
    """A full copy of the run's config file with the run's own --set values written in unmarked,
    and the edits marked `# Changed from <the run's value>: <finding>`."""
    loader.with_overrides(edits)  # raises ConfigError (nothing written) when they do not validate together
    unmarked = "\n".join(_MARK.sub("", line) for line in loader.render().splitlines()) + "\n"
    tree = parse_yaml_text(unmarked, source)
    was = run.loader.to_dict()
    for key, value in edits.items():
        set_with_comment(tree, split_key(key), value, lookup(was, key), key, schema_default)
    text = annotate_changes(dump_yaml(tree), reason)
    lines = [*header, f"a full copy of {source}"]
    return "".join(f"# {line}\n" for line in lines) + "\n" + text


_MARK = re.compile(r"  # Changed from .*?(?=  #|$)")
