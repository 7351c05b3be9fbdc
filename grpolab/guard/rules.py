"""The doctor's rules on a running run's metrics: the rows logged so far, kept in memory. Each live kind calls the
doctor's own finder (grpolab.tune.doctor) on a doctor `Run` built from those rows, so a live finding reads exactly like
`grpolab doctor` would. constant_reward and no_learning_signal look at a window instead of the whole history (a run
that *had* signal and lost it is caught too): they hold when the reward spread was zero at each of the last
`guard.window` logged steps. Divergence also counts blown-up weights (the callback measures the trainable-weight norm):
a huge step under Adam saturates the softmax and the loss and gradient go to 0, never to NaN."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from grpolab.run.metrics import is_finite
from grpolab.tune import doctor
from grpolab.tune.doctor import Finding
from grpolab.tune.thresholds import THRESHOLDS


@contextmanager
def guard_limits(values: dict[str, float]) -> Iterator[None]:
    """The doctor's finders read every limit from THRESHOLDS: for the length of a check they read
    the guard's values instead (the table is restored after; training calls this from one thread)."""
    saved = {name: THRESHOLDS[name] for name in values if name in THRESHOLDS}
    try:
        for name, old in saved.items():
            THRESHOLDS[name] = dataclasses.replace(old, value=values[name])
        yield
    finally:
        THRESHOLDS.update(saved)


def _zero_spread(row: dict, limit: float) -> bool | None:
    """Whether every group of this logged step had the same reward; None for a row without rewards."""
    frac, std = row.get("frac_reward_zero_std"), row.get("reward_std")
    if is_finite(frac):
        return frac >= 1.0 - 1e-9
    return std <= limit if is_finite(std) else None


def zero_spread_window(rows: list[dict], window: int, limit: float) -> list[dict] | None:
    """The last `window` rows that logged a reward, when each had zero reward spread; else None."""
    scored = [row for row in rows if _zero_spread(row, limit) is not None]
    last = scored[-window:]
    return last if len(last) == window and all(_zero_spread(row, limit) for row in last) else None


def only_reward_collapse(finding: Finding) -> bool:
    """A divergence whose sole evidence is a reward that fell from its best step: early in a run a
    few noisy batch means can look like that, so the guard warns on it and stops only on hard
    evidence (a non-finite value, exploding gradients, blown-up weights)."""
    return finding.id == "divergence" and finding.thresholds == ["reward_collapse"] and len(finding.evidence) == 1


def live_findings(
    run: doctor.Run, kinds: list[str], window: int, limits: dict[str, float], weight_growth: float | None
) -> list[Finding]:
    """The findings among `kinds` that hold on the rows of `run` now, in the doctor's order."""
    found: dict[str, Finding] = {}
    with guard_limits(limits):
        if "divergence" in kinds:
            finding, limit = doctor.find_divergence(run), limits["weight_growth"]
            if weight_growth is not None and weight_growth > limit:  # first: the most direct evidence
                finding = finding or doctor.divergence(run, [], [])
                growth = f"the trainable-weight norm is {weight_growth:.3g}x its value before step 1 (> {limit:g}x)"
                finding.evidence.insert(0, f"{growth}: one or more updates blew up the weights")
            if finding:
                found["divergence"] = finding
        zero = zero_spread_window(run.metrics, window, limits["constant_reward_std"])
        if zero is not None:
            recent = dataclasses.replace(run, metrics=zero)
            if "constant_reward" in kinds and (constant := doctor.find_constant_reward(recent)):
                found["constant_reward"] = constant
            elif "no_learning_signal" in kinds and (signal := doctor.find_no_signal(recent)):
                found["no_learning_signal"] = signal
        finders = {
            "clipped_completions": lambda: doctor.find_clipped(run),
            "kl_growth": lambda: doctor.find_kl_growth(run),
            "entropy_collapse": lambda: doctor.find_entropy_collapse(run),
            "reward_hacking": lambda: doctor.find_reward_hacking(run),
            "lr_too_low": lambda: doctor.find_lr_too_low(run, zero_signal=zero is not None, constant=False),
        }
        for kind, find in finders.items():
            if kind in kinds and (finding := find()):
                found[kind] = finding
        return doctor.checked(run, list(found.values()))
