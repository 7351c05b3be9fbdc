"""Seeds as an axis: mean ± 95% CI (t-distribution) checked against numbers worked out by hand,
Welch's t-test, seed groups in `compare` (table, within-noise mark, plot bands), `runs annotate`
of a run in a seed group, and a 2-config x 3-seed sweep that ends with that table and plot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_sweep_parallel import BASE, fake_trainer, record_of, sweep_file, train_command

from grpolab.cli.main import main
from grpolab.config import ConfigError
from grpolab.config.yaml_io import dump_yaml
from grpolab.experiment import annotate as annotate_mod
from grpolab.experiment import stats
from grpolab.experiment.compare import compare_table, draw, group_rows, seed_groups
from grpolab.experiment.runs import find_runs
from grpolab.experiment.sweep import load_sweep, runner


# --------------------------------------------------------------------------- by hand
def test_mean_and_ci_by_hand():
    # [1, 2, 3]: mean 2, sd 1, t(0.975, df 2) = 4.302653 (t table) -> half = 4.302653 / sqrt(3) = 2.484138
    est = stats.mean_ci([1, 2, 3])
    assert (est.mean, est.n, est.sd) == (2.0, 3, 1.0)
    assert est.half == pytest.approx(2.484138, abs=1e-6)
    assert (est.low, est.high) == pytest.approx((-0.484138, 4.484138), abs=1e-6)
    assert est.text() == "2 ± 2.484"
    # [0.2, 0.4, 0.6, 0.8]: mean 0.5, sd sqrt(0.2/3) = 0.258199, t(0.975, df 3) = 3.182446 -> half 0.410843
    est = stats.mean_ci([0.2, 0.4, 0.6, 0.8])
    assert est.mean == pytest.approx(0.5) and est.sd == pytest.approx(0.258199, abs=1e-6)
    assert est.half == pytest.approx(3.182446 * 0.258199 / 2, abs=1e-5)
    # One value: a mean, no interval.
    single = stats.mean_ci([0.7])
    assert (single.half, single.low, single.text()) == (None, None, "0.7")
    with pytest.raises(ValueError):
        stats.mean_ci([])


def test_t_quantiles_from_the_table():
    for df, t in ((1, 12.706205), (2, 4.302653), (4, 2.776445), (9, 2.262157), (30, 2.042272)):
        assert stats.t_ppf(0.975, df) == pytest.approx(t, abs=1e-5)
        assert stats.t_cdf(t, df) == pytest.approx(0.975, abs=1e-7)
    assert stats.t_cdf(0.0, 5) == pytest.approx(0.5) and stats.t_ppf(0.025, 3) == pytest.approx(-3.182446, abs=1e-5)


def test_welch_by_hand():
    # a = [1, 2, 3], b = [4, 5, 6]: variances 1 and 1, se = sqrt(1/3 + 1/3) = 0.816497, t = -3 / se = -3.674235,
    # df = (2/3)^2 / ((1/3)^2 / 2 * 2) = 4; two-sided p for |t| = 3.674235 at df 4 = 0.021312.
    test = stats.welch([1, 2, 3], [4, 5, 6])
    assert test.t == pytest.approx(-3.674235, abs=1e-6) and test.df == pytest.approx(4.0)
    assert test.p == pytest.approx(0.021312, abs=1e-5) and not test.within_noise
    assert stats.welch([1, 2, 3], [1.5, 2.5, 2.0]).within_noise
    assert stats.welch([1.0], [2.0, 3.0]) is None
    assert stats.welch([1.0, 1.0], [1.0, 1.0]).p == 1.0 and stats.welch([1.0, 1.0], [2.0, 2.0]).p == 0.0


def test_against_scipy_where_installed():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2.5, 3, 7, 19.3, 60):
        assert stats.t_ppf(0.975, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-9)
        for t in (-2.5, 0.3, 1.7, 6.0):
            assert stats.t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-12)
    a, b = [0.41, 0.47, 0.52, 0.39], [0.55, 0.61, 0.49]
    ours, theirs = stats.welch(a, b), scipy_stats.ttest_ind(a, b, equal_var=False)
    assert ours.t == pytest.approx(theirs.statistic) and ours.p == pytest.approx(theirs.pvalue)


# --------------------------------------------------------------------------- seed groups
def fake_run(parent: Path, name: str, lr: float, seed: int, rewards: list[float], config_file=None) -> Path:
    run_dir = parent / name
    run_dir.mkdir(parents=True)
    config = {"mode": "local", "training": {"learning_rate": lr, "seed": seed}, "grpo": {"beta": 0.0}}
    (run_dir / "resolved_config.yaml").write_text(dump_yaml(config))
    info = {"run_name": name, "status": "finished", "global_step": len(rewards)}
    if config_file:
        info["config_file"] = str(config_file)
    (run_dir / "run_info.json").write_text(json.dumps(info))
    records = [{"step": i + 1, "reward": r} for i, r in enumerate(rewards)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"final": {"reward": rewards[-1]}, "best": {"reward": max(rewards)}, "steps": len(rewards)}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


# lr 1e-4: final rewards 0.5, 0.6, 0.7 (mean 0.6, sd 0.1, half 4.302653 x 0.1 / sqrt 3 = 0.248414)
# lr 1e-3: 0.55, 0.65, 0.6 (mean 0.6, within noise);  lr 1e-2: 0.1, 0.12, 0.11 (clearly worse)
SETTINGS = {1e-4: [0.5, 0.6, 0.7], 1e-3: [0.55, 0.65, 0.6], 1e-2: [0.1, 0.12, 0.11]}


@pytest.fixture
def grouped(tmp_path) -> Path:
    for lr, finals in SETTINGS.items():
        for seed, final in enumerate(finals):
            fake_run(
                tmp_path / "runs", f"x_lr{lr:g}_seed{seed}_20260101-00000{seed}", lr, seed, [0.0, final / 2, final]
            )
    return tmp_path / "runs"


def test_runs_that_differ_only_in_the_seed_form_groups(grouped):
    groups = seed_groups(find_runs([grouped]))
    assert sorted(g.n for g in groups) == [3, 3, 3]
    assert sorted(g.label for g in groups) == ["x_lr0.0001", "x_lr0.001", "x_lr0.01"]
    keys, rows = group_rows(groups, "reward")
    assert keys == ["training.learning_rate"]  # the seed is the group, not a difference
    header, body = rows[0], {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert header[-4:] == ["FINAL reward (mean ± 95% CI)", "BEST reward (mean ± 95% CI)", "VS BEST", "STATUS"]
    first = body["x_lr0.0001"]
    assert first["n"] == "3" and first["SEEDS"] == "0,1,2" and first["STATUS"] == "3 finished"
    mean, half = first["FINAL reward (mean ± 95% CI)"].split(" ± ")
    assert float(mean) == pytest.approx(0.6) and float(half) == pytest.approx(0.2484, abs=1e-4)
    verdicts = {name: row["VS BEST"] for name, row in body.items()}
    best = next(name for name, v in verdicts.items() if v == "best")
    assert best in ("x_lr0.0001", "x_lr0.001")
    other = ({"x_lr0.0001", "x_lr0.001"} - {best}).pop()
    assert verdicts[other].startswith("within noise (p=") and verdicts["x_lr0.01"].startswith("differs (p=")
    assert rows[-1][0] == "x_lr0.01"  # worst last
    # Another metric as mean ± CI beside it (steps: every run logged 3).
    _, rows = group_rows(groups, "reward", also=("reward", "kl"))
    assert rows[0][-2] == "FINAL kl (mean ± 95% CI)" and rows[1][-2] == "-"


def test_compare_cli_shows_groups_and_says_which_test(grouped, tmp_path, capsys):
    out_png = tmp_path / "cmp.png"
    assert main(["compare", str(grouped), "--out", str(out_png), "--metric", "reward", "--metric", "reward"]) == 0
    text = capsys.readouterr().out
    assert "FINAL reward (mean ± 95% CI)" in text
    assert "mean ± 95% CI" in text and "within noise" in text and "Welch's t-test, p >= 0.05" in text
    assert "t-distribution" in text and "\nruns:\n" in text  # the per-run table follows
    assert "reward: 3 curves" in text and out_png.stat().st_size > 1000


def test_plot_draws_a_mean_curve_with_a_band_per_group(grouped):
    from matplotlib.collections import PolyCollection

    fig = draw(find_runs([grouped]), ["reward", "reward"])
    for ax in fig.axes:
        assert len(ax.lines) == 3  # one mean curve per group, not one per run
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 3
        labels = [line.get_label() for line in ax.lines]
        assert all("(mean of 3 seeds, 95% CI)" in label for label in labels)
    # The band of the lr 1e-4 group (drawn in the order of the curves) at the last step is its CI: 0.6 ± 0.2484.
    ax = fig.axes[0]
    index = next(i for i, line in enumerate(ax.lines) if line.get_label().startswith("x_lr0.0001"))
    assert ax.lines[index].get_ydata()[-1] == pytest.approx(0.6)
    ys = ax.collections[index].get_paths()[0].vertices[:, 1]
    assert max(ys) == pytest.approx(0.6 + 0.248414, abs=1e-5) and min(ys) == pytest.approx(0.0)


def test_runs_without_seed_siblings_compare_as_before(tmp_path):
    fake_run(tmp_path, "a", 1e-4, 0, [0.1, 0.2])
    fake_run(tmp_path, "b", 1e-3, 0, [0.1, 0.3])
    text = compare_table(find_runs([tmp_path]), "reward")
    assert "mean ±" not in text and text.splitlines()[0].startswith("RUN")


def test_annotate_writes_mean_and_ci_of_the_seed_group(grouped, tmp_path):
    config = tmp_path / "x.yaml"  # the values its runs recorded (annotate refuses a file that changed since)
    config.write_text("mode: local\ntraining:\n  learning_rate: 1.0e-4\n  seed: 0\ngrpo:\n  beta: 0.0\n")
    run_dir = grouped / "x_lr0.0001_seed0_20260101-000000"
    info = json.loads((run_dir / "run_info.json").read_text())
    (run_dir / "run_info.json").write_text(json.dumps({**info, "config_file": str(config)}))
    _, block = annotate_mod.annotate(run_dir)
    assert "Seeds (3 runs of this config, seeds 0, 1, 2): reward final 0.6 ± 0.2484" in block
    assert "(mean ± 95% CI)" in block


# --------------------------------------------------------------------------- seeds in a sweep
@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(BASE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


SEEDS = """\
name: lr_seeds
base: configs/base.yaml
seeds: [0, 1, 2]
parameters:
  training.learning_rate: [1.0e-4, 2.0e-4]
"""


def test_sweep_with_seeds_names_files_and_runs_by_seed(workdir, capsys):
    assert main(["sweep", str(sweep_file(workdir, SEEDS)), "--dry-run"]) == 0
    files = sorted(p.name for p in (workdir / "configs").glob("base_lr*.yaml"))
    assert files == [f"base_lr{lr}_seed{s}.yaml" for lr in ("1e-4", "2e-4") for s in (0, 1, 2)]
    text = (workdir / "configs" / "base_lr2e-4_seed1.yaml").read_text()
    assert "# Seed: training.seed = 1 (this trial runs once per seed: [0, 1, 2])" in text
    assert "seed: 1  # Changed from 42" in text
    assert capsys.readouterr().out.count("wrote") == 6


def test_two_configs_three_seeds_end_with_mean_ci_and_a_noise_mark(workdir, monkeypatch, capsys):
    """The acceptance case: 2 configs x 3 seeds; seed noise (±0.1) is larger than the effect
    (lr 1e-4 vs 2e-4: +0.1 x 1000 x 1e-4 = 0.1): the table says within noise, the PNG has bands."""
    noise = {0: -0.1, 1: 0.0, 2: 0.15}
    monkeypatch.setattr(runner, "TRAIN_COMMAND", train_command(fake_trainer(workdir, noise=noise)))
    assert main(["sweep", str(sweep_file(workdir, SEEDS))]) == 0
    out = capsys.readouterr().out
    trials = record_of(workdir, "lr_seeds")["trials"]
    assert [(t["trial"], t["seed"], t["status"]) for t in trials] == [
        (n, s, "finished") for n in (1, 2) for s in (0, 1, 2)
    ]
    names = sorted(Path(t["run_dir"]).name.rsplit("_", 1)[0] for t in trials)
    assert names == sorted(f"base_lr{lr}_seed{s}" for lr in ("1e-4", "2e-4") for s in (0, 1, 2))
    table = out[out.index("sweep lr_seeds: 6 runs, 6 finished") :]
    assert "FINAL reward (mean ± 95% CI)" in table and "within noise (p=" in table and "best" in table
    lines = [line for line in table.splitlines() if line.startswith("base_lr")][:2]
    assert all(" 3 " in line and "0,1,2" in line for line in lines)
    png = next((workdir / "results").glob("sweep_lr_seeds_*.png"))
    from matplotlib.collections import PolyCollection

    fig = draw([r for r in find_runs([workdir / "results"])], ["reward"])
    assert sum(isinstance(c, PolyCollection) for c in fig.axes[0].collections) == 2 and png.stat().st_size > 1000


@pytest.mark.parametrize(
    "text, message",
    [
        ("seeds: [0, 0]\n", "s.yaml:4: seeds: lists a value twice: [0, 0]."),
        ("seeds: []\n", "s.yaml:4: seeds: List should have at least 1 item"),
        ("seeds: [0, x]\n", "s.yaml:4: seeds[1]: Input should be a valid integer (got 'x')"),
        ("seeds: 3\n", "s.yaml:4: seeds: Input should be a valid list (got 3)."),
        (
            "seeds: [0, 1]\nset:\n  training.seed: 3\n",
            "s.yaml:5: set: sets training.seed, which `seeds:` sets for each run.",
        ),
        ("sedes: [0, 1]\n", "s.yaml:4: sedes: unknown key. Did you mean `seeds`?"),
    ],
)
def test_bad_seeds_name_the_key(workdir, text, message):
    path = workdir / "s.yaml"
    path.write_text("base: configs/base.yaml\nparameters:\n  training.learning_rate: [1.0e-4]\n" + text)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert message in str(info.value)


@pytest.mark.slow
def test_tiny_model_two_configs_three_seeds(tiny_gpt2, tmp_path, monkeypatch, capsys, subprocess_env):
    """The acceptance case on the real tiny model: 6 runs, 2 at once; the end is the seed-group
    table (mean ± CI, a noise verdict against the best group) and a plot with one band per config."""
    from matplotlib.collections import PolyCollection

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", subprocess_env["PYTHONPATH"])
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text(
        "mode: local\noutput_dir: ./results\n"
        f"model:\n  name_or_path: {tiny_gpt2}\n"
        "data:\n  max_samples: 8\n"
        "training:\n  max_steps: 2\n  per_device_train_batch_size: 2\n  logging_steps: 1\n  save_steps: 1000\n"
        "grpo:\n  num_generations: 2\n  generation_batch_size: 2\n  beta: 0.0\n"
        "generation:\n  max_completion_length: 4\nlogging:\n  report_to: [none]\n"
    )
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "name: tiny_seeds\nbase: configs/tiny.yaml\nseeds: [0, 1, 2]\n"
        "parameters:\n  training.learning_rate: [1.0e-4, 1.0e-2]\n"
    )
    parallel = "2" if len(os.sched_getaffinity(0)) >= 2 else "1"
    assert main(["sweep", str(path), "--parallel", parallel]) == 0
    out = capsys.readouterr().out
    table = out[out.index("sweep tiny_seeds: 6 runs, 6 finished") :]
    rows = [line for line in table.splitlines() if line.startswith("tiny_lr")][:2]
    assert len(rows) == 2 and all(" 3 " in row and "0,1,2" in row and " ± " in row for row in rows)
    assert "best" in table and ("within noise (p=" in table or "differs (p=" in table)
    runs = find_runs([tmp_path / "results"])
    assert sorted(r.name.rsplit("_", 1)[0] for r in runs) == sorted(
        f"tiny_lr{lr}_seed{s}" for lr in ("1e-4", "0.01") for s in (0, 1, 2)
    )
    fig = draw(runs, ["reward"])
    assert sum(isinstance(c, PolyCollection) for c in fig.axes[0].collections) == 2
    assert list((tmp_path / "results").glob("sweep_tiny_seeds_*.png"))
