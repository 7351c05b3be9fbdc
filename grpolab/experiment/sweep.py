"""`grpolab sweep SWEEP.yaml`: one config file per trial (named by the seed's convention,
made through the loader so the base file's comments stay and changes are marked), run one
after another as `python training/grpo_training.py --config <trial file>`, then compared.

The SWEEP.yaml format is documented in configs/sweeps/example_sweep.yaml."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import random
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.errors import did_you_mean
from grpolab.config.yaml_io import format_float, inline_yaml, read_yaml_file, to_plain, write_atomic

from .compare import compare_table, lower_is_better
from .runs import GONE, is_run_dir, load_run

KEYS = ("name", "base", "strategy", "trials", "seed", "metric", "direction", "parameters", "set", "config_dir")
STRATEGIES = ("grid", "random", "optuna")
RANGE_KEYS = ("low", "high", "log")
# Short names for file names (grpo_cluster_lr1e-4_beta0.05.yaml); other keys use their last part.
ABBREV = {
    "learning_rate": "lr",
    "per_device_train_batch_size": "bs",
    "gradient_accumulation_steps": "ga",
    "num_generations": "gen",
    "generation_batch_size": "gbs",
    "steps_per_generation": "spg",
    "max_completion_length": "len",
    "num_iterations": "iters",
    "temperature": "temp",
    "weight_decay": "wd",
    "warmup_steps": "warmup",
    "lr_scheduler_type": "sched",
    "loss_type": "loss",
    "scale_rewards": "scale",
    "num_train_epochs": "epochs",
    "max_steps": "steps",
}
TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "training" / "grpo_training.py"
EXIT_INTERRUPTED = (130, 143)  # SIGINT / SIGTERM: the user stopped the sweep


@dataclass
class Sweep:
    path: Path
    name: str
    base: Path
    strategy: str
    parameters: dict  # dotted key -> list of values, or {low, high, log}
    fixed: dict = field(default_factory=dict)  # `set:`
    trials: int | None = None
    seed: int = 0
    metric: str = "reward"
    direction: str = "maximize"
    config_dir: Path | None = None


@dataclass
class Trial:
    index: int  # 1-based
    params: dict
    path: Path
    text: str
    loader: GRPOConfigLoader


# ------------------------------------------------------------------------- the sweep file
def load_sweep(path) -> Sweep:
    """Read and validate a sweep file; every parameter value is checked by the loader."""
    path = Path(path)
    tree = read_yaml_file(path)
    data = to_plain(tree, str(path), tree)

    def where(*keys) -> str:
        """file:line of a key (parameter keys contain dots, so no dotted lookup here)."""
        node, line = tree, None
        for key in keys:
            if not isinstance(node, CommentedMap) or key not in node:
                break
            pos = (node.lc.data or {}).get(key)
            line, node = (pos[0] + 1 if pos else line), node[key]
        return f"{path}:{line}" if line else str(path)

    def fail(key: str, message: str, fix: str | None = None):
        raise ConfigError(Problem(key, message, fix, where(key)))

    for key in data:
        if key not in KEYS:
            fail(key, f"unknown sweep key.{did_you_mean(key, KEYS) or ' Allowed: ' + ', '.join(KEYS) + '.'}")
    for key in ("base", "parameters"):
        if key not in data:
            fail(key, "is required.", "see configs/sweeps/example_sweep.yaml")
    strategy = data.get("strategy", "grid")
    if strategy not in STRATEGIES:
        fail(
            "strategy",
            f"`{strategy}` is not a strategy; allowed: "
            f"{', '.join(STRATEGIES)}.{did_you_mean(str(strategy), STRATEGIES)}",
        )
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
        fail(
            "name",
            f"{name!r} is not a usable name (letters, digits, _ . - only): it becomes the "
            "WandB group and part of file names.",
        )
    trials = data.get("trials")
    if strategy == "grid" and ("trials" in data or "seed" in data):
        fail(
            "trials" if "trials" in data else "seed",
            "does not apply to strategy grid, which runs every combination once.",
            "delete it, or use strategy: random",
        )
    if strategy != "grid" and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        fail(
            "trials",
            f"strategy {strategy} needs `trials:` (a whole number >= 1), got {trials!r}.",
            "add e.g. `trials: 8`",
        )
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        fail("seed", f"must be a whole number, got {seed!r}.")
    metric = data.get("metric", "reward")
    if not isinstance(metric, str):
        fail("metric", f"must be a logged metric name such as reward or kl, got {metric!r}.")
    direction = data.get("direction", "minimize" if lower_is_better(metric) else "maximize")
    if direction not in ("maximize", "minimize"):
        fail("direction", f"`{direction}` must be maximize or minimize.")
    if not isinstance(data["base"], str) or not Path(data["base"]).is_file():
        fail(
            "base",
            f"config file `{data['base']}` not found.",
            "give a path relative to the current directory, e.g. configs/grpo_cluster.yaml",
        )
    base = Path(data["base"])
    fixed = data.get("set") or {}
    if not isinstance(fixed, dict):
        fail("set", "must be a mapping of dotted keys to values, e.g. `training.max_steps: 200`.")
    if "logging.group" in fixed:
        fail(
            "set",
            "sets logging.group, which a sweep sets to its name.",
            "delete it; name the sweep with `name:` instead",
        )
    params = data["parameters"]
    if not isinstance(params, dict) or not params:
        fail(
            "parameters",
            "must be a non-empty mapping of dotted config keys to a list of values or a range {low, high}.",
        )
    config_dir = Path(data["config_dir"]) if data.get("config_dir") else base.parent

    GRPOConfigLoader(config_path=base)  # the base itself must be valid (its own file:line in errors)
    _check_values(base, fixed, {}, where("set"))
    for key, spec in params.items():
        at = where("parameters", key)
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(
                    Problem(f"parameters.{key}", "has an empty list of values.", "give at least one value", at)
                )
            if len({repr(v) for v in spec}) != len(spec):
                raise ConfigError(Problem(f"parameters.{key}", f"lists a value twice: {inline_yaml(spec)}.", None, at))
            if strategy == "optuna" and any(isinstance(v, (list, dict)) for v in spec):
                raise ConfigError(
                    Problem(
                        f"parameters.{key}",
                        "optuna can only choose among scalar values (numbers, strings, booleans).",
                        None,
                        at,
                    )
                )
            candidates = spec
        elif isinstance(spec, dict):
            candidates = _check_range(key, spec, strategy, at)
        else:
            raise ConfigError(
                Problem(
                    f"parameters.{key}",
                    f"must be a list of values or a range {{low, high}}, got {inline_yaml(spec)}.",
                    f"write `{key}: [{inline_yaml(spec)}]`",
                    at,
                )
            )
        for value in candidates:
            _check_values(base, fixed, {key: value}, at)
    combos = math.prod(len(s) for s in params.values()) if all(isinstance(s, list) for s in params.values()) else None
    if strategy == "random" and combos is not None and combos < trials:
        fail(
            "trials",
            f"{trials} trials, but the parameters have only {combos} distinct combinations.",
            "use strategy: grid, or fewer trials",
        )
    return Sweep(path, name, base, strategy, params, fixed, trials, seed, metric, direction, config_dir)


def _check_range(key: str, spec: dict, strategy: str, at: str) -> list:
    for k in spec:
        if k not in RANGE_KEYS:
            raise ConfigError(
                Problem(
                    f"parameters.{key}.{k}",
                    f"unknown range key; allowed: low, high, log.{did_you_mean(k, RANGE_KEYS)}",
                    None,
                    at,
                )
            )
    if strategy == "grid":
        raise ConfigError(
            Problem(
                f"parameters.{key}",
                "a range needs strategy random or optuna; grid needs a list of values.",
                f"write e.g. `{key}: [{inline_yaml(spec.get('low'))}, {inline_yaml(spec.get('high'))}]`",
                at,
            )
        )
    low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high or not isinstance(log, bool) or (log and low <= 0):
        raise ConfigError(
            Problem(
                f"parameters.{key}",
                f"a range needs numbers low < high (and low > 0 with log: true), got {inline_yaml(spec)}.",
                None,
                at,
            )
        )
    return [low, high]


def _check_values(base: Path, fixed: dict, params: dict, at: str) -> None:
    """The loader's own validation, with the problem pointed at the sweep file."""
    try:
        GRPOConfigLoader(config_path=base, overrides={**fixed, **params})
    except ConfigError as exc:
        raise ConfigError([Problem(p.key, p.message, p.fix, at) for p in exc.problems]) from None


# ------------------------------------------------------------------------- trials
def value_text(value) -> str:
    """1e-4 -> '1e-4', 0.05 -> '0.05', True -> 'true': short, and safe in a file name."""
    if isinstance(value, float):
        text = format_float(value).replace(".0e", "e")
    else:
        text = inline_yaml(value)
    return re.sub(r"[^\w.+-]+", "-", text).strip("-") or "x"


def trial_stem(base_stem: str, params: dict) -> str:
    shorts = [
        ABBREV.get(re.split(r"[.\[\]]+", k.strip("]"))[-1], re.split(r"[.\[\]]+", k.strip("]"))[-1]) for k in params
    ]
    if len(set(shorts)) < len(shorts):  # two keys with one last part: spell them out
        shorts = [re.sub(r"[^\w]+", "-", k).strip("-") for k in params]
    return base_stem + "".join(f"_{short}{value_text(v)}" for short, v in zip(shorts, params.values()))


def make_trial(sweep: Sweep, index: int, total: int, params: dict) -> Trial:
    loader = GRPOConfigLoader(config_path=sweep.base)
    shown = ", ".join(f"{k} = {inline_yaml(v)}" for k, v in params.items())
    try:
        loader.update_params({**sweep.fixed, **params, "logging.group": sweep.name})
    except ConfigError as exc:  # each value was checked alone; this combination is what fails
        raise ConfigError(
            [Problem(p.key, p.message, p.fix, f"{sweep.path}, trial {index} ({shown})") for p in exc.problems]
        ) from None
    common = ", ".join(f"{k} = {inline_yaml(v)}" for k, v in {**sweep.fixed, "logging.group": sweep.name}.items())
    header = (
        f"# Sweep `{sweep.name}` ({sweep.strategy}), trial {index} of {total}, from {sweep.path}\n"
        f"# This trial: {shown}\n"
        f"# Every trial: {common}\n"
        f"# Base: {sweep.base}; changed values are marked `# Changed from ...` below.\n"
    )
    path = sweep.config_dir / f"{trial_stem(sweep.base.stem, params)}.yaml"
    return Trial(index, params, path, header + loader.render(), loader)


def grid(sweep: Sweep) -> list[dict]:
    keys = list(sweep.parameters)
    return [dict(zip(keys, combo)) for combo in itertools.product(*sweep.parameters.values())]


def _round(value: float) -> float:
    return float(f"{value:.3g}")  # three significant digits: readable names, the value the file says


def sample_random(sweep: Sweep) -> list[dict]:
    rng = random.Random(sweep.seed)
    out, names = [], set()
    for _ in range(sweep.trials * 50):
        params = {}
        for key, spec in sweep.parameters.items():
            if isinstance(spec, list):
                params[key] = rng.choice(spec)
                continue
            low, high, log = spec["low"], spec["high"], spec.get("log", False)
            x = math.exp(rng.uniform(math.log(low), math.log(high))) if log else rng.uniform(low, high)
            params[key] = round(x) if isinstance(low, int) and isinstance(high, int) else _round(x)
        name = trial_stem(sweep.base.stem, params)
        if name not in names:
            names.add(name)
            out.append(params)
        if len(out) == sweep.trials:
            return out
    raise ConfigError(
        Problem(
            "trials",
            f"only {len(out)} distinct trials could be drawn from these parameters.",
            "widen the ranges or lower trials",
            str(sweep.path),
        )
    )


def suggest_optuna(ot, sweep: Sweep) -> dict:
    params = {}
    for key, spec in sweep.parameters.items():
        if isinstance(spec, list):
            params[key] = ot.suggest_categorical(key, spec)
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            params[key] = ot.suggest_int(key, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            params[key] = _round(ot.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False)))
    return params


def write_trial(trial: Trial, force: bool = False) -> str:
    """Write the trial file: 'wrote', or 'unchanged' when an identical file is there (a dry run
    before the real one). A different file of that name is only replaced with force."""
    if trial.path.exists():
        if trial.path.read_text() == trial.text:
            return "unchanged"
        if not force:
            raise ConfigError(
                Problem("", "exists with other content.", "delete it, or pass --force to replace it", str(trial.path))
            )
    write_atomic(trial.path, trial.text, overwrite=force)
    if GRPOConfigLoader(config_path=trial.path).to_dict() != trial.loader.to_dict():
        trial.path.unlink()
        raise ConfigError(
            Problem(
                "",
                "internal error: the trial file does not reload to the trial's config; removed.",
                None,
                str(trial.path),
            )
        )
    return "wrote"


# ------------------------------------------------------------------------- running
def run_trial(trial: Trial, out=print) -> dict:
    """Train one trial in a subprocess. Ctrl-C reaches the child too: it checkpoints and stops,
    and the sweep waits for it instead of killing it."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = Path(trial.loader.config.output_dir)
    run_name = f"{trial.path.stem}_{stamp}"
    n = 2
    while (parent / run_name).exists():
        run_name, n = f"{trial.path.stem}_{stamp}-{n}", n + 1
    cmd = [sys.executable, str(TRAIN_SCRIPT), "--config", str(trial.path), "--run-name", run_name]
    out(f"$ {' '.join(cmd)}")
    proc = subprocess.Popen(cmd)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        code = proc.wait()
    run_dir = parent / run_name
    record = {
        "trial": trial.index,
        "config": str(trial.path),
        "params": trial.params,
        "run_dir": str(run_dir),
        "exit_code": code,
    }
    if is_run_dir(run_dir):
        status = load_run(run_dir).status
        # A crash the pipeline could not record leaves "running" behind: the exit code says more.
        record["status"] = "failed" if code != 0 and status in ("running", GONE) else status
    else:
        record["status"] = "failed"
        record["run_dir"] = None
    return record


def run_sweep(sweep: Sweep, dry_run: bool = False, force: bool = False, out=print) -> int:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    records: list[dict] = []
    record_path = None

    def save(record: dict) -> None:
        nonlocal record_path
        records.append(record)
        if dry_run:
            return
        if record_path is None:
            parent = Path(GRPOConfigLoader(config_path=sweep.base, overrides=sweep.fixed).config.output_dir)
            parent.mkdir(parents=True, exist_ok=True)
            record_path = parent / f"sweep_{sweep.name}_{stamp}.json"
        summary = {
            "sweep": sweep.name,
            "file": str(sweep.path),
            "strategy": sweep.strategy,
            "metric": sweep.metric,
            "trials": records,
        }
        record_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")

    if sweep.strategy == "optuna":
        code = _run_optuna(sweep, dry_run, force, out, save)
    else:
        params_list = grid(sweep) if sweep.strategy == "grid" else sample_random(sweep)
        # Build (and so validate) every trial before writing any file.
        trials = [make_trial(sweep, i, len(params_list), p) for i, p in enumerate(params_list, 1)]
        names = [t.path.name for t in trials]
        if len(set(names)) < len(names):
            raise ConfigError(
                Problem(
                    "parameters",
                    f"two trials would share a file name ({sorted({n for n in names if names.count(n) > 1})[0]}).",
                    "give the values in a form that differs when written",
                    str(sweep.path),
                )
            )
        for trial in trials:
            if trial.path.exists() and trial.path.read_text() != trial.text and not force:
                write_trial(trial)  # raises: say so before anything is written
        code = 0
        for trial in trials:
            out(f"[{trial.index}/{len(trials)}] {write_trial(trial, force)} {trial.path}")
            if dry_run:
                continue
            record = run_trial(trial, out)
            save(record)
            if record["exit_code"] in EXIT_INTERRUPTED:
                out("sweep interrupted: the remaining trials were not run")
                code = record["exit_code"]
                break
            if record["exit_code"] != 0:
                out(f"trial {trial.index} failed (exit {record['exit_code']}); going on")
                code = 1
    if dry_run:
        out(f"dry run: trial configs are in {sweep.config_dir}; nothing was trained (run again without --dry-run)")
        return 0
    finish(sweep, records, record_path, out)
    return code


def _run_optuna(sweep: Sweep, dry_run: bool, force: bool, out, save) -> int:
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            Problem("strategy", "optuna is not installed.", "pip install optuna", str(sweep.path))
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=sweep.name, direction=sweep.direction, sampler=optuna.samplers.TPESampler(seed=sweep.seed)
    )
    done: dict[str, float | None] = {}  # trial file -> objective, for repeated suggestions
    code = 0
    for i in range(1, sweep.trials + 1):
        ot = study.ask()
        params = suggest_optuna(ot, sweep)
        try:
            trial = make_trial(sweep, i, sweep.trials, params)
        except ConfigError as exc:  # a combination the loader rejects: a failed trial, not a failed sweep
            out(f"[{i}/{sweep.trials}] invalid combination {params}: {exc}")
            study.tell(ot, state=optuna.trial.TrialState.FAIL)
            save({"trial": i, "params": params, "status": "invalid", "error": str(exc)})
            code = 1
            continue
        if trial.path.name in done:
            out(f"[{i}/{sweep.trials}] TPE repeated {trial.path.name}; reusing its result")
            _tell(study, ot, done[trial.path.name], optuna)
            continue
        out(f"[{i}/{sweep.trials}] {write_trial(trial, force)} {trial.path}")
        if dry_run:
            done[trial.path.name] = None
            continue
        record = run_trial(trial, out)
        value = (
            load_run(record["run_dir"]).final(sweep.metric) if record["run_dir"] and record["exit_code"] == 0 else None
        )
        record["objective"] = value
        save(record)
        done[trial.path.name] = value
        _tell(study, ot, value, optuna)
        if record["exit_code"] in EXIT_INTERRUPTED:
            out("sweep interrupted: the remaining trials were not run")
            return record["exit_code"]
        if record["exit_code"] != 0:
            out(f"trial {i} failed (exit {record['exit_code']}); going on")
            code = 1
    return code


def _tell(study, ot, value, optuna) -> None:
    if value is None:
        study.tell(ot, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(ot, value)


def finish(sweep: Sweep, records: list[dict], record_path: Path | None, out=print) -> None:
    """The compare table of every trial that left a run directory, and its plot."""
    runs = [load_run(r["run_dir"]) for r in records if r.get("run_dir")]
    failed = [r for r in records if r.get("status") != "finished"]
    out(
        f"\nsweep {sweep.name}: {len(records)} trials, {len(records) - len(failed)} finished"
        + (f", {len(failed)} not ({', '.join(str(r['trial']) for r in failed)})" if failed else "")
    )
    if runs:
        out(compare_table(runs, sweep.metric))
    if record_path is not None:
        out(f"sweep record: {record_path}")
        if runs:
            try:
                from .compare import plot

                png = record_path.with_suffix(".png")
                plot(runs, [sweep.metric], png)
                out(f"plot: {png}")
            except ImportError:
                pass  # matplotlib is optional
