"""The one table of thresholds `grpolab doctor` judges a run by.
Every finding reads its limits from here and nowhere else, so a limit changes in one place and the
report quotes the value it used. Each entry says what it compares (metric names as TRL logs them in
metrics.jsonl) and why that limit; the recommended ranges are grpolab.config.rules.RECOMMENDED."""

from __future__ import annotations

from dataclasses import dataclass

from grpolab.config.rules import RECOMMENDED

# config key -> the name its range thresholds start with (lr_range_low, lr_range_high, ...)
RANGE_NAMES = {"training.learning_rate": "lr", "grpo.beta": "beta", "grpo.num_generations": "generations"}


@dataclass(frozen=True)
class Threshold:
    value: float
    compares: str  # what is compared with `value`
    why: str  # why this limit, in the terms of the GRPO loss


THRESHOLDS: dict[str, Threshold] = {
    # ---- how much evidence a trend needs
    "min_points": Threshold(
        4,
        "logged steps a trend finding needs (reward flat, entropy or KL trends)",
        "fewer points are noise: a first-vs-last comparison of 2-3 logged steps says nothing",
    ),
    # ---- learning signal
    "zero_std_frac": Threshold(
        0.5,
        "mean of frac_reward_zero_std over the logged steps",
        "a group whose completions all get the same reward has advantage 0 and adds nothing to the "
        "gradient; above half, most of each batch is wasted compute",
    ),
    "constant_reward_std": Threshold(
        1e-9,
        "largest reward_std of any logged step (and the spread of the step means of reward)",
        "a reward that never varies gives every completion advantage 0: nothing is learned, whatever "
        "the other settings; this is a broken reward or a wrong column, not a tuning problem",
    ),
    # ---- completion length
    "clipped_ratio": Threshold(
        0.3,
        "mean of completions/clipped_ratio (completions that hit max_completion_length without the "
        "end token) over the logged steps",
        "a clipped completion is scored on a cut-off answer, so its reward says little about the "
        "answer the model meant to give",
    ),
    # ---- entropy
    "entropy_collapse_ratio": Threshold(
        0.1,
        "entropy of the last logged step / entropy of the first",
        "when sampling becomes (almost) deterministic the completions of a group coincide, their "
        "rewards coincide and the group stops carrying signal",
    ),
    "entropy_floor": Threshold(
        0.02,
        "entropy (nats per token) of the last logged step; both this and the ratio must be crossed",
        "below this a temperature-1 sample is nearly always the greedy token",
    ),
    # ---- KL
    "kl_max": Threshold(
        0.5,
        "kl of the last logged step (TRL's per-token k3 estimate against the reference model)",
        "a healthy run keeps kl around 0.001-0.1; far above it the policy has left the reference "
        "model and the penalty no longer holds it",
    ),
    "kl_growth": Threshold(
        3.0,
        "mean kl of the last quarter of the logged steps / mean kl of the second quarter",
        "kl still multiplying late in the run means it is not levelling off: beta is too weak for the step size",
    ),
    "kl_extreme": Threshold(
        2.0,
        "kl of the last logged step, whatever its trend",
        "a KL this far above the healthy range means the policy jumped away from the reference model "
        "(often in the first steps) and stayed there",
    ),
    # ---- learning rate too low
    "lr_floor": Threshold(
        1e-5,
        "largest logged learning_rate",
        "Adam moves each weight by about the learning rate per step, whatever the gradient's size: "
        "at 1e-6 (TRL's default) a model of a few million parameters barely moves in hundreds of steps",
    ),
    "reward_flat": Threshold(
        0.02,
        "mean reward of the last third of the logged steps minus that of the first third",
        "less gain than this is within step-to-step noise of a batch mean",
    ),
    # ---- reward hacking
    "reward_gain": Threshold(
        0.05,
        "reward rise from the first third to the last third of the logged steps",
        "a real rise of the training reward, beyond noise",
    ),
    "eval_drop": Threshold(
        0.05,
        "fall of held-out accuracy (eval/accuracy, or summary.json's before/after) from its first to its last value",
        "the training reward rises while held-out answers get worse: the policy found a way to score "
        "that is not the task (reward hacking)",
    ),
    # ---- divergence
    "grad_norm_spike": Threshold(
        50.0,
        "largest grad_norm / median grad_norm of the first three logged steps",
        "a gradient this much larger than at the start means the updates have blown up the weights",
    ),
    "reward_collapse": Threshold(
        0.5,
        "fraction of the best step-mean reward lost by the mean of the last third of the logged steps (best > 0.1 "
        "only, and at least twice min_points logged steps)",
        "a run that learned and then lost most of it has diverged, even without a NaN",
    ),
    # ---- batch
    "min_prompts_per_step": Threshold(
        4,
        "unique prompts per generation round (generation_batch_size / num_generations)",
        "advantages are normalised per group, so each round's gradient rests on this many prompts; "
        "with fewer, one easy or impossible prompt decides the whole update",
    ),
    "min_effective_batch": Threshold(
        16,
        "completions per optimizer step (per_device_train_batch_size x gradient_accumulation_steps x world size)",
        "the gradient is an average over these completions; fewer make very noisy updates",
    ),
    # ---- the recommended ranges: config/rules.py's table, which `config validate` warns with
    **{
        f"{name}_range_{end}": Threshold(getattr(RECOMMENDED[key], end), key, "the recommended range")
        for key, name in RANGE_NAMES.items()
        for end in ("low", "high")
    },
}


def limit(name: str) -> float:
    return THRESHOLDS[name].value


def table() -> str:
    """The table as text, for `grpolab doctor --thresholds`."""
    width = max(len(k) for k in THRESHOLDS)
    lines = [f"{'threshold':<{width}}  {'value':>8}  compares"]
    for name, t in THRESHOLDS.items():
        lines += [f"{name:<{width}}  {t.value:>8g}  {t.compares}", f"{'':<{width}}  {'':>8}  why: {t.why}"]
    return "\n".join(lines)
