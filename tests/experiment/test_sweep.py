"""`grpolab sweep`: the sweep file's validation, trial files named after the base and its values,
made through the loader, grid / random / optuna, failures recorded, and a REAL 2-trial sweep."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.experiment.sweep import load_sweep, runner
from grpolab.experiment.sweep.strategies import sample_random, trial_stem, value_text

BASE_TEXT = (REPO_ROOT / "configs" / "grpo_cluster.yaml").read_text()
# The base file's header comment, and the comments of a changed key (beta) and an unchanged one.
BASE_COMMENTS = [next(line for line in BASE_TEXT.splitlines() if line.startswith("# grpolab preset"))] + [
    "#" + line.split("#", 1)[1]
    for line in BASE_TEXT.splitlines()
    if line.strip().startswith(("beta:", "num_processes:")) and "#" in line
]
assert len(BASE_COMMENTS) == 3, BASE_COMMENTS


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A checkout-like folder: configs/grpo_cluster.yaml (a copy of the preset) and configs/sweeps/."""
    (tmp_path / "configs" / "sweeps").mkdir(parents=True)
    (tmp_path / "configs" / "grpo_cluster.yaml").write_text(BASE_TEXT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_sweep(workdir: Path, text: str, name: str = "s.yaml") -> Path:
    path = workdir / "configs" / "sweeps" / name
    path.write_text(text)
    return path


GRID = """\
name: lr_beta
base: configs/grpo_cluster.yaml
strategy: grid
parameters:
  training.learning_rate: [1.0e-5, 1.0e-4]
  grpo.beta: [0.01, 0.05]
set:
  training.max_steps: 200
"""


def test_names_follow_the_naming_convention():
    assert (
        trial_stem("grpo_cluster", {"training.learning_rate": 1e-4, "grpo.beta": 0.05})
        == "grpo_cluster_lr1e-4_beta0.05"
    )
    assert [value_text(v) for v in (5e-5, 3e-6, 0.001, 1.5e-5, 16, True, "cosine", [1, 2])] == [
        "5e-5",
        "3e-6",
        "0.001",
        "1.5e-5",
        "16",
        "true",
        "cosine",
        "1-2",
    ]
    # Two keys with one last part are spelled out in full.
    assert trial_stem("x", {"training.seed": 1, "grpo.seed": 2}) == "x_training-seed1_grpo-seed2"


def test_grid_dry_run_writes_four_named_valid_commented_configs(workdir, capsys):
    path = write_sweep(workdir, GRID)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    names = sorted(p.name for p in (workdir / "configs").glob("grpo_cluster_*.yaml"))
    assert names == [
        "grpo_cluster_lr1e-4_beta0.01.yaml",
        "grpo_cluster_lr1e-4_beta0.05.yaml",
        "grpo_cluster_lr1e-5_beta0.01.yaml",
        "grpo_cluster_lr1e-5_beta0.05.yaml",
    ]
    for name in names:
        trial = workdir / "configs" / name
        cfg = GRPOConfigLoader(config_path=trial).config
        lr, beta = (1e-4 if "lr1e-4" in name else 1e-5), (0.05 if "beta0.05" in name else 0.01)
        assert (cfg.training.learning_rate, cfg.grpo.beta, cfg.training.max_steps, cfg.logging.group) == (
            lr,
            beta,
            200,
            "lr_beta",
        )
        text = trial.read_text()
        lines = text.splitlines()
        assert lines[0].startswith("# Sweep `lr_beta` (grid), trial ") and " of 4, from " in lines[0]
        assert (
            lines[1]
            == f"# This trial: training.learning_rate = {'1.0e-4' if lr == 1e-4 else '1.0e-5'}, grpo.beta = {beta}"
        )
        assert "# Every trial: training.max_steps = 200, logging.group = lr_beta" in lines[2]
        # The base file's comments are all there, and the changes are marked.
        for comment in BASE_COMMENTS:
            assert comment in text
        assert "learning_rate: " in text and "# Changed from 3.0e-5" in text
        assert "max_steps: 200  # Changed from -1" in text and "group: lr_beta  # Changed from null" in text
    assert not (workdir / "grpo_results_cluster").exists()  # nothing trained
    out = capsys.readouterr().out
    assert out.count("wrote configs/grpo_cluster_") == 4 and "dry run" in out
    # Again: identical files are reused, so a dry run can precede the real one.
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("unchanged") == 4
    # A file of that name with other content is never replaced without --force.
    (workdir / "configs" / names[0]).write_text("mode: cluster\n")
    assert main(["sweep", str(path), "--dry-run"]) == 2
    assert "exists with other content" in capsys.readouterr().err
    assert main(["sweep", str(path), "--dry-run", "--force"]) == 0


def test_random_is_reproducible_and_rounds_values(workdir):
    text = """\
base: configs/grpo_cluster.yaml
strategy: random
trials: 5
seed: 3
parameters:
  training.learning_rate: {low: 1.0e-6, high: 1.0e-4, log: true}
  grpo.num_generations: [4, 8]
  training.gradient_accumulation_steps: {low: 1, high: 4}
"""
    sweep = load_sweep(write_sweep(workdir, text))
    first, second = sample_random(sweep), sample_random(sweep)
    assert first == second and len(first) == 5
    assert len({trial_stem("b", p) for p in first}) == 5
    for params in first:
        lr = params["training.learning_rate"]
        assert 1e-6 <= lr <= 1e-4 and float(f"{lr:.3g}") == lr
        assert isinstance(params["training.gradient_accumulation_steps"], int)


def test_optuna_dry_run_writes_trials(workdir, capsys):
    pytest.importorskip("optuna")
    text = """\
name: tpe
base: configs/grpo_cluster.yaml
strategy: optuna
trials: 3
seed: 0
parameters:
  grpo.beta: {low: 0.001, high: 0.1, log: true}
"""
    assert main(["sweep", str(write_sweep(workdir, text)), "--dry-run"]) == 0
    files = list((workdir / "configs").glob("grpo_cluster_beta*.yaml"))
    assert len(files) == 3
    for f in files:
        assert 0.001 <= GRPOConfigLoader(config_path=f).config.grpo.beta <= 0.1


def test_optuna_is_imported_only_for_its_strategy(workdir):
    import subprocess

    path = write_sweep(workdir, GRID)
    code = (
        "import sys; from grpolab.experiment.sweep import load_sweep, run_sweep; "
        f"run_sweep(load_sweep({str(path)!r}), dry_run=True, out=print); assert 'optuna' "
        "not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("wrote") == 4


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "base: configs/grpo_cluster.yaml\nparamters:\n  grpo.beta: [0.1]\n",
            "s.yaml:2: paramters: unknown key. Did you mean `parameters`?",
        ),
        (
            "base: configs/grpo_cluster.yaml\nparameters:\n  grpo.betta: [0.1]\n",
            "s.yaml:3: grpo.betta: unknown key. Did you mean `beta`?",
        ),
        (
            "base: configs/grpo_cluster.yaml\nparameters:\n  trainig.learning_rate: [0.1]\n",
            "s.yaml:3: trainig: unknown top-level key. Did you mean `training`?",
        ),
        (
            "base: configs/grpo_cluster.yaml\nparameters:\n  grpo.beta: []\n",
            "s.yaml:3: parameters.grpo.beta: List should have at least 1 item",
        ),
        (
            "base: configs/grpo_cluster.yaml\nparameters: {}\n",
            "s.yaml:2: parameters: Dictionary should have at least 1 item",
        ),
        (
            "base: configs/grpo_cluster.yaml\nparameters:\n  grpo.beta: 0.1\n",
            "s.yaml:3: parameters.grpo.beta: must be a list of values such as [0.1, 0.2], or a range {low, high, log}",
        ),
        (
            "base: configs/grpo_cluster.yaml\nparameters:\n  grpo.beta: {low: 0.1, high: 0.2}\n",
            "s.yaml:3: parameters.grpo.beta: a range needs strategy random or optuna; grid needs a list of values. "
            "Fix: write e.g. `grpo.beta: [0.1, 0.2]`",
        ),
        (
            "base: configs/grpo_cluster.yaml\nstrategy: random\ntrials: 2\nparameters:\n  "
            "grpo.beta: {low: 0.1, hgh: 0.2}\n",
            "s.yaml:5: parameters.grpo.beta.hgh: unknown key. Did you mean `high`?",
        ),
        (
            "base: configs/grpo_cluster.yaml\nstrategy: random\ntrials: 2\nparameters:\n  "
            "grpo.beta: {low: 0.2, high: 0.1}\n",
            "s.yaml:5: parameters.grpo.beta: a range needs low < high",
        ),
        (
            "base: configs/grpo_cluster.yaml\nstrategy: random\nparameters:\n  grpo.beta: [0.1, 0.2]\n",
            "trials: strategy random needs `trials:` (a whole number >= 1). Fix: add e.g. `trials: 8`",
        ),
        (
            "base: configs/grpo_cluster.yaml\nstrategy: random\ntrials: 3\nparameters:\n  grpo.beta: [0.1, 0.2]\n",
            "s.yaml:3: trials: 3 trials, but the parameters have only 2 distinct combinations",
        ),
        (
            "base: configs/grpo_cluster.yaml\ntrials: 3\nparameters:\n  grpo.beta: [0.1, 0.2]\n",
            "s.yaml:2: trials: does not apply to strategy grid",
        ),
        (
            "base: configs/grpo_cluster.yaml\nstrategy: bayes\nparameters:\n  grpo.beta: [0.1]\n",
            "s.yaml:2: strategy: Input should be 'grid', 'random' or 'optuna' (got 'bayes')",
        ),
        (
            "base: configs/missing.yaml\nparameters:\n  grpo.beta: [0.1]\n",
            "s.yaml:1: base: config file `configs/missing.yaml` not found",
        ),
        ("parameters:\n  grpo.beta: [0.1]\n", "s.yaml: base: Field required"),
        (
            "base: configs/grpo_cluster.yaml\nparameters:\n  grpo.beta: [0.1, -0.5]\n",
            "grpo.beta: Input should be greater than or equal to 0",
        ),
        (
            "base: configs/grpo_cluster.yaml\nparameters:\n  grpo.num_generations: [7]\n",
            "not divisible by grpo.num_generations = 7",
        ),
        (
            "base: configs/grpo_cluster.yaml\nset:\n  training.max_step: 3\nparameters:\n  grpo.beta: [0.1]\n",
            "s.yaml:2: training.max_step: unknown key. Did you mean `max_steps`?",
        ),
        (
            "base: configs/grpo_cluster.yaml\nset:\n  logging.group: g\nparameters:\n  grpo.beta: [0.1]\n",
            "s.yaml:2: set: sets logging.group, which a sweep sets to its name",
        ),
        (
            "name: a b\nbase: configs/grpo_cluster.yaml\nparameters:\n  grpo.beta: [0.1]\n",
            "s.yaml:1: name: 'a b' is not a usable name",
        ),
        (
            "base: configs/grpo_cluster.yaml\nparameters:\n  grpo.beta: [0.1, 0.1]\n",
            "s.yaml:3: parameters.grpo.beta: lists a value twice",
        ),
    ],
)
def test_sweep_file_errors(workdir, text, message):
    with pytest.raises(ConfigError) as info:
        load_sweep(write_sweep(workdir, text))
    assert message in str(info.value)
    assert not list((workdir / "configs").glob("grpo_cluster_*.yaml"))


@pytest.mark.parametrize("strategy", ["random", "optuna"])
def test_a_sampler_seed_outside_numpys_range_is_refused_for_both_samplers(workdir, strategy):
    """Optuna's TPE seeds numpy (0 .. 2**32-1); the random sampler follows the same rule."""
    for seed, ok in ((-1, False), (0, True), (2**32 - 1, True), (2**32, False), (10**30, False)):
        text = f"base: configs/grpo_cluster.yaml\nstrategy: {strategy}\ntrials: 2\nseed: {seed}\nparameters:\n"
        path = write_sweep(workdir, text + "  grpo.beta: [0.1, 0.2]\n")
        if ok:
            assert load_sweep(path).seed == seed
            continue
        with pytest.raises(ConfigError) as info:
            load_sweep(path)
        assert "s.yaml:4: seed:" in str(info.value), (seed, str(info.value))


@pytest.mark.parametrize("strategy", ["random", "optuna"])
@pytest.mark.parametrize("trials", [3, 5, 10**6])
def test_more_trials_than_combinations_is_refused_for_both_samplers(workdir, strategy, trials):
    text = f"base: configs/grpo_cluster.yaml\nstrategy: {strategy}\ntrials: {trials}\nparameters:\n"
    with pytest.raises(ConfigError) as info:
        load_sweep(write_sweep(workdir, text + "  grpo.beta: [0.1, 0.2]\n"))
    assert f"s.yaml:3: trials: {trials} trials, but the parameters have only 2 distinct combinations" in str(
        info.value
    )
    text = text.replace(f"trials: {trials}", "trials: 2")  # the fix the message gives: fewer trials
    assert load_sweep(write_sweep(workdir, text + "  grpo.beta: [0.1, 0.2]\n")).trials == 2


# A valid sweep file that sets every key of SweepSpec (and of a range), one key a line.
EVERY_KEY = {
    "name": "n",
    "base": "configs/grpo_cluster.yaml",
    "strategy": "random",
    "trials": "2",
    "seed": "0",
    "seeds": "[0, 1]",
    "metric": "reward",
    "direction": "maximize",
    "pruner": "median",
    "parameters": "\n  grpo.beta:\n    low: 0.01\n    high: 0.1\n    log: true",
    "set": "\n  training.max_steps: 5",
    "config_dir": "configs",
}


def _sweep_text(values: dict) -> str:
    return "".join(f"{key}: {value}\n" for key, value in values.items())


def _wrong_types():
    """(key as the error names it, its line, the file) for every field given a value of the wrong type."""
    for key in EVERY_KEY:
        wrong = "7" if key in ("parameters", "set") else "{wrong: 1}"  # a mapping is no field's type but theirs
        text = _sweep_text({**EVERY_KEY, key: wrong})
        yield key, _line(text, f"{key}: "), text
    for field in ("low", "high", "log"):
        text = _sweep_text(EVERY_KEY).replace(f"    {field}: ", f"    {field}: [wrong]  # was ")
        yield f"parameters.grpo.beta.{field}", _line(text, f"    {field}: "), text


def _line(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start))


def test_every_sweep_key_of_the_wrong_type_is_named_at_its_line(workdir):
    from grpolab.experiment.sweep import SweepSpec
    from grpolab.experiment.sweep.spec import Range

    aliases = {f.alias or name for name, f in SweepSpec.model_fields.items()}
    assert set(EVERY_KEY) == aliases and set(Range.model_fields) == {"low", "high", "log"}  # a new key joins the list
    sweep = load_sweep(write_sweep(workdir, _sweep_text(EVERY_KEY)))
    assert (sweep.name, sweep.trials, sweep.seeds, sweep.fixed) == ("n", 2, [0, 1], {"training.max_steps": 5})
    cases = list(_wrong_types())
    assert len(cases) == len(aliases) + 3
    for key, line, text in cases:
        with pytest.raises(ConfigError) as info:
            load_sweep(write_sweep(workdir, text))
        assert f"s.yaml:{line}: {key}: " in str(info.value), (key, str(info.value))
        assert "Traceback" not in str(info.value)


def test_an_invalid_combination_is_named_and_nothing_is_written(workdir, capsys):
    """Each value is valid alone; sync_ref_model with beta 0 (no reference model) is not."""
    text = (
        "base: configs/grpo_cluster.yaml\nparameters:\n  grpo.beta: [0.01, 0.0]\n  "
        "grpo.sync_ref_model: [false, true]\n"
    )
    assert main(["sweep", str(write_sweep(workdir, text)), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "trial 4 (grpo.beta = 0.0, grpo.sync_ref_model = true)" in err and "needs a reference model" in err
    assert not list((workdir / "configs").glob("grpo_cluster_*.yaml"))


FAKE_TRAINER = """\
import json, os, sys
from pathlib import Path
from grpolab.config import GRPOConfigLoader
# `grpolab train`'s contract with a sweep: --config, and the run directory handed over in GRPOLAB_RUN_DIR.
assert sys.argv[1:3] == ["train", "--config"], sys.argv
config = sys.argv[3]
loader = GRPOConfigLoader(config_path=config)
if "{fail}" in config:
    sys.exit({code})
run_dir = Path(os.environ["GRPOLAB_RUN_DIR"])
assert run_dir.is_dir() and run_dir.parent == Path(loader.config.output_dir).resolve() and not any(run_dir.iterdir())
(run_dir / "resolved_config.yaml").write_text(Path(config).read_text())
(run_dir / "run_info.json").write_text(json.dumps({{"status": "finished", "config_file": config, "global_step": 2}}))
lr = loader.config.training.learning_rate
score = {{"reward": lr * 1000}}
(run_dir / "summary.json").write_text(json.dumps({{"final": score, "best": score}}))
"""


@pytest.mark.parametrize("code, trials_run", [(1, 2), (130, 1)])
def test_a_failed_trial_is_recorded_and_the_sweep_goes_on(workdir, monkeypatch, capsys, code, trials_run):
    """Exit 1: recorded, next trial runs. Exit 130 (Ctrl-C): the sweep stops there."""
    script = workdir / "fake_train.py"
    script.write_text(FAKE_TRAINER.format(fail="lr1e-5", code=code))
    monkeypatch.setattr(runner, "TRAIN_COMMAND", [sys.executable, str(script), "train"])
    text = "name: f\nbase: configs/grpo_cluster.yaml\nparameters:\n  training.learning_rate: [1.0e-5, 1.0e-4]\n"
    result = main(["sweep", str(write_sweep(workdir, text))])
    assert result == code
    out = capsys.readouterr().out
    records = list((workdir / "grpo_results_cluster").glob("sweep_f_*.json"))
    assert len(records) == 1
    trials = json.loads(records[0].read_text())["trials"]
    assert len(trials) == trials_run
    assert trials[0]["exit_code"] == code and trials[0]["status"] == "failed" and trials[0]["run_dir"] is None
    if code == 1:
        assert "trial 1 failed (exit 1); going on" in out
        assert trials[1]["status"] == "finished" and trials[1]["exit_code"] == 0
        assert "grpo_cluster_lr1e-4_" in out and "FINAL reward" in out  # the compare table of what finished
    else:
        assert "sweep interrupted" in out
