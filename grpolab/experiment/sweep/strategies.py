"""How a sweep picks its trials: grid, random and optuna behind `ask()` (the next parameter set, or None),
`tell()` (its objective) and `report()` (an intermediate value: stop it? only optuna prunes). Grid and
random know all their trials in advance (`planned`): the runner checks every file first."""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from grpolab.config import ConfigError
from grpolab.config.yaml_io import format_float, inline_yaml

from .spec import Range, Sweep

if TYPE_CHECKING:
    import optuna

# Short names for file names (grpo_cluster_lr1e-4_beta0.05.yaml); other keys use their last part.
ABBREV = dict(
    item.split("=")
    for item in (
        "learning_rate=lr per_device_train_batch_size=bs gradient_accumulation_steps=ga num_generations=gen "
        "generation_batch_size=gbs steps_per_generation=spg max_completion_length=len num_iterations=iters "
        "temperature=temp weight_decay=wd warmup_steps=warmup lr_scheduler_type=sched loss_type=loss "
        "scale_rewards=scale num_train_epochs=epochs max_steps=steps"
    ).split()
)
COMPLETE, FAIL, PRUNED = "complete", "fail", "pruned"


def value_text(value) -> str:
    """1e-4 -> '1e-4', 0.05 -> '0.05', True -> 'true': short, and safe in a file name."""
    text = format_float(value).replace(".0e", "e") if isinstance(value, float) else inline_yaml(value)
    return re.sub(r"[^\w.+-]+", "-", text).strip("-") or "x"


def trial_stem(base_stem: str, params: dict, seed: int | None = None) -> str:
    """The trial's file stem (and its runs' name): the base's stem and each value, then the seed."""
    lasts = [re.split(r"[.\[\]]+", k.strip("]"))[-1] for k in params]
    shorts = [ABBREV.get(last, last) for last in lasts]
    if len(set(shorts)) < len(shorts):  # two keys with one last part: spell them out
        shorts = [re.sub(r"[^\w]+", "-", k).strip("-") for k in params]
    stem = base_stem + "".join(f"_{short}{value_text(v)}" for short, v in zip(shorts, params.values()))
    return stem if seed is None else f"{stem}_seed{seed}"


def grid(sweep: Sweep) -> list[dict]:
    return [dict(zip(sweep.parameters, combo)) for combo in itertools.product(*sweep.parameters.values())]


def _round(value: float) -> float:
    return float(f"{value:.3g}")  # three significant digits: readable names, the value the file says


def sample_random(sweep: Sweep) -> list[dict]:
    """`trials` distinct parameter sets, the same ones for the same `seed`."""
    rng = random.Random(sweep.seed)
    drawn: dict[str, dict] = {}  # trial name -> its parameters
    for _ in range(sweep.trials * 50):
        params = {}
        for key, spec in sweep.parameters.items():
            if isinstance(spec, list):
                params[key] = rng.choice(spec)
                continue
            low, high = spec.low, spec.high
            x = math.exp(rng.uniform(math.log(low), math.log(high))) if spec.log else rng.uniform(low, high)
            params[key] = round(x) if spec.integer else _round(x)
        drawn.setdefault(trial_stem(sweep.base.stem, params), params)
        if len(drawn) == sweep.trials:
            return list(drawn.values())
    message = f"only {len(drawn)} distinct trials could be drawn from these parameters."
    raise ConfigError.of("trials", message, "widen the ranges or lower trials", str(sweep.path))


@dataclass
class Suggestion:
    number: int  # 1-based trial number
    params: dict
    handle: optuna.trial.Trial | None = None  # optuna's own object for this trial


class Planned:
    """Grid and random: a fixed list of parameter sets, handed out in order."""

    prunes = False

    def __init__(self, params_list: list[dict]):
        self.planned, self.total, self._next = params_list, len(params_list), 0

    def ask(self) -> Suggestion | None:
        if self._next >= self.total:
            return None
        self._next += 1
        return Suggestion(self._next, self.planned[self._next - 1])

    def tell(self, suggestion: Suggestion, value: float | None, state: str = COMPLETE) -> None:
        pass  # the plan does not depend on results

    def report(self, suggestion: Suggestion, step: int, value: float) -> bool:
        return False


class Optuna:
    """TPE from the results so far; the median pruner stops a trial below earlier ones at that step."""

    planned = None

    def __init__(self, sweep: Sweep):
        try:
            import optuna
        except ImportError:
            message = "optuna is not installed."
            raise ConfigError.of("strategy", message, "pip install optuna", str(sweep.path)) from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=1) if sweep.prune else optuna.pruners.NopPruner()
        sampler = optuna.samplers.TPESampler(seed=sweep.seed)
        self.study = optuna.create_study(
            study_name=sweep.name, direction=sweep.direction, sampler=sampler, pruner=pruner
        )
        self.optuna, self.sweep, self.total, self._asked, self.prunes = optuna, sweep, sweep.trials, 0, sweep.prune

    def ask(self) -> Suggestion | None:
        if self._asked >= self.total:
            return None
        self._asked += 1
        ot, params = self.study.ask(), {}
        for key, spec in self.sweep.parameters.items():
            if isinstance(spec, list):
                params[key] = ot.suggest_categorical(key, spec)
            elif isinstance(spec, Range) and spec.integer:
                params[key] = ot.suggest_int(key, spec.low, spec.high, log=spec.log)
            else:
                params[key] = _round(ot.suggest_float(key, spec.low, spec.high, log=spec.log))
        return Suggestion(self._asked, params, ot)

    def tell(self, suggestion: Suggestion, value: float | None, state: str = COMPLETE) -> None:
        states = self.optuna.trial.TrialState
        if state == COMPLETE and value is not None:
            self.study.tell(suggestion.handle, value)
        else:
            self.study.tell(suggestion.handle, state=states.PRUNED if state == PRUNED else states.FAIL)

    def report(self, suggestion: Suggestion, step: int, value: float) -> bool:
        suggestion.handle.report(value, step)
        return self.prunes and suggestion.handle.should_prune()


Strategy = Planned | Optuna


def make_strategy(sweep: Sweep) -> Strategy:
    if sweep.strategy == "optuna":
        return Optuna(sweep)
    return Planned(grid(sweep) if sweep.strategy == "grid" else sample_random(sweep))
