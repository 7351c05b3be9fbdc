"""`grpolab runs list`, `grpolab compare` and `grpolab runs annotate` on REAL tiny runs
(3 optimizer steps, 2 completions of 4 tokens) that differ in learning rate and beta, plus
faked run_info.json records for the statuses a short run cannot produce."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.keys import flatten
from grpolab.config.yaml_io import dump_yaml
from grpolab.experiment import annotate as annotate_mod
from grpolab.experiment.compare import compare_rows, differing_keys, plot
from grpolab.experiment.runs import GONE, effective_status, find_runs, load_run
from grpolab.run.record import RunInfo

# (run name, learning rate, beta): lr differs between a and b, beta between b and c.
RUNS = [("a_lr1e-4_beta0.01", 1e-4, 0.01), ("b_lr1e-2_beta0.01", 1e-2, 0.01), ("c_lr1e-2_beta0.1", 1e-2, 0.1)]


def tiny_config(
    model: str, output_dir: Path, lr: float, beta: float, report_to=("none",), env: dict | None = None
) -> str:
    """A commented YAML config for a seconds-long CPU run."""
    data = {
        "mode": "local",
        "output_dir": str(output_dir),
        "model": {"name_or_path": model},
        "data": {"max_samples": 8},
        "training": {
            "max_steps": 3,
            "per_device_train_batch_size": 2,
            "logging_steps": 1,
            "save_steps": 1000,
            "learning_rate": lr,
        },
        "grpo": {"num_generations": 2, "generation_batch_size": 2, "beta": beta},
        "generation": {"max_completion_length": 4},
        "logging": {"report_to": list(report_to)},
    }
    if env:
        data["env"] = env
    return f"# tiny experiment: lr {lr:g}, beta {beta:g}\n" + dump_yaml(data)


def train_in_process(config: Path, run_name: str) -> Path:
    """`python training/grpo_training.py --config F --run-name N`, in this process (no 5 s import)."""
    from grpolab.train.pipeline import run_from_args
    from grpolab.train.request import TrainRequest

    parser = argparse.ArgumentParser()
    TrainRequest.add_arguments(parser)
    assert run_from_args(parser.parse_args(["--config", str(config), "--run-name", run_name])) == 0
    return Path(GRPOConfigLoader(config_path=config).config.output_dir) / run_name


@pytest.fixture(scope="module")
def real_runs(tiny_gpt2, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("experiment_runs")
    dirs = []
    for name, lr, beta in RUNS:
        config = root / "configs" / f"{name}.yaml"
        config.parent.mkdir(exist_ok=True)
        config.write_text(tiny_config(tiny_gpt2, root / "results", lr, beta))
        dirs.append(train_in_process(config, name))
    return dirs


def fake_run(parent: Path, name: str, **info) -> Path:
    run_dir = parent / name
    run_dir.mkdir(parents=True)
    record = {
        "run_name": name,
        "started": "2026-01-02T03:04:05+00:00",
        "config_file": f"configs/{name}.yaml",
        "git": {"commit": "0123456789abcdef", "dirty": True},
        "host": {"hostname": socket.gethostname()},
    }
    (run_dir / "run_info.json").write_text(json.dumps({**record, **info}))
    return run_dir


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- compare
@pytest.mark.slow
def test_compare_lists_only_the_differing_hyperparameters(real_runs):
    runs = [load_run(d) for d in real_runs]
    keys, rows = compare_rows(runs, "reward")
    assert keys == ["training.learning_rate", "grpo.beta"]
    header = rows[0]
    assert header[:3] == ["RUN", "training.learning_rate", "grpo.beta"]
    for same in ("training.max_steps", "generation.max_completion_length", "model.name_or_path", "output_dir"):
        assert same not in header
    assert {"FINAL reward", "BEST reward", "FINAL kl", "RUNTIME s", "STEPS", "STATUS"} <= set(header)
    by_name = {row[0]: dict(zip(header, row)) for row in rows[1:]}
    assert set(by_name) == {name for name, _, _ in RUNS}
    assert by_name["a_lr1e-4_beta0.01"]["training.learning_rate"] == "1.0e-4"
    assert by_name["c_lr1e-2_beta0.1"]["grpo.beta"] == "0.1"
    for row in by_name.values():
        assert row["STATUS"] == "finished" and row["STEPS"] == "3"
        float(row["FINAL reward"]), float(row["BEST reward"]), float(row["FINAL kl"]), float(row["RUNTIME s"])


@pytest.mark.slow
def test_compare_sorts_by_the_chosen_metric(real_runs):
    runs = [load_run(d) for d in real_runs]
    # kl: lower is better, ascending; entropy: higher is better, descending.
    for metric, reverse in (("kl", False), ("entropy", True)):
        rows = compare_rows(runs, metric)[1][1:]
        expected = sorted(runs, key=lambda r: r.best(metric), reverse=reverse)
        assert [row[0] for row in rows] == [r.name for r in expected]
        assert len({r.best(metric) for r in runs}) > 1  # the runs really differ, so the order means something


@pytest.mark.slow
def test_compare_plot_has_one_curve_per_run(real_runs, tmp_path):
    from PIL import Image

    runs = [load_run(d) for d in real_runs]
    counts = plot(runs, ["reward", "kl"], tmp_path / "report.png")
    assert counts == {"reward": 3, "kl": 3}
    with Image.open(tmp_path / "report.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 300


@pytest.mark.slow
def test_compare_cli(real_runs, tmp_path, capsys):
    out = tmp_path / "cmp.png"
    assert main(["compare", *map(str, real_runs), "--metric", "kl", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "training.learning_rate" in text and "grpo.beta" in text and "BEST kl" in text
    assert "kl: 3 curves" in text and out.stat().st_size > 1000
    # The parent output dir works too; a metric nobody logged is a usage error with a suggestion.
    assert main(["compare", str(real_runs[0].parent), "--metric", "rewrd", "--out", str(out)]) == 2
    assert "Did you mean `reward`?" in capsys.readouterr().err


def test_differing_keys_and_flatten():
    a = {"training": {"learning_rate": 1e-4, "seed": 1}, "rewards": [{"name": "x", "weight": 1.0}], "env": {}}
    b = {"training": {"learning_rate": 1e-3, "seed": 1}, "rewards": [{"name": "x", "weight": 0.5}], "env": {"A": "1"}}
    assert flatten(a)["rewards[0].weight"] == 1.0
    assert differing_keys([a, b]) == ["training.learning_rate", "rewards[0].weight", "env.A"]
    assert differing_keys([a, a]) == []


# --------------------------------------------------------------------------- runs list
@pytest.mark.slow
def test_runs_list_shows_real_and_faked_runs(real_runs, tmp_path, capsys):
    fakes = tmp_path / "fakes"
    fake_run(fakes, "crashed", status="failed", global_step=7, error="loss NaN")
    fake_run(fakes, "stopped", status="interrupted", global_step=4)
    fake_run(fakes, "killed", status="running", pid=dead_pid(), started="2026-01-02T03:04:05+00:00")
    fake_run(fakes, "alive", status="running", pid=os.getpid(), started="2099-01-01T00:00:00+00:00")
    assert main(["runs", "list", str(real_runs[0].parent), str(fakes)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip() and not line.startswith(GONE)}
    assert out.splitlines()[0].split() == ["NAME", "STARTED", "CONFIG", "STATUS", "STEPS", "BEST", "REWARD", "COMMIT"]
    for name, _, _ in RUNS:
        assert "finished" in lines[name] and f"configs/{name}.yaml" in lines[name]
        assert lines[name].split()[5] == "3"  # steps
    assert "failed" in lines["crashed"] and " 7 " in lines["crashed"] and "01234567+dirty" in lines["crashed"]
    assert "interrupted " in lines["stopped"]
    assert GONE in lines["killed"] and "process is gone" in out
    assert "running" in lines["alive"]


def test_running_status_checks_the_process():
    host = {"hostname": socket.gethostname()}
    assert (
        effective_status(
            RunInfo.from_dict(
                {"status": "running", "pid": os.getpid(), "host": host, "started": "2099-01-01T00:00:00+00:00"}
            )
        )
        == "running"
    )
    assert effective_status(RunInfo.from_dict({"status": "running", "pid": dead_pid(), "host": host})) == GONE
    # A live pid that started after the run did belongs to another process (pid reuse).
    if Path("/proc/self/stat").exists():
        assert (
            effective_status(
                RunInfo.from_dict(
                    {"status": "running", "pid": os.getpid(), "host": host, "started": "2000-01-01T00:00:00+00:00"}
                )
            )
            == GONE
        )
    # Another machine, or no pid recorded: the record is all there is.
    assert (
        effective_status(
            RunInfo.from_dict({"status": "running", "pid": dead_pid(), "host": {"hostname": "elsewhere"}})
        )
        == "running"
    )
    assert effective_status(RunInfo.from_dict({"status": "running"})) == "running"
    assert effective_status(RunInfo.from_dict({"status": "failed", "pid": os.getpid(), "host": host})) == "failed"


def test_runs_list_without_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["runs", "list"]) == 0
    assert "no runs" in capsys.readouterr().out
    assert main(["runs", "list", str(tmp_path / "missing")]) == 2


def test_a_run_without_summary_is_summarised_from_metrics(tmp_path):
    run_dir = fake_run(tmp_path, "partial", status="running")
    records = [
        {"step": 1, "reward": 0.2, "kl": 0.1},
        {"step": 2, "reward": 0.5, "kl": 0.3},
        {"step": 3, "reward": 0.4, "kl": 0.2},
    ]
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + '{"step": 4, "rew'
    )  # killed mid-write
    run = find_runs([tmp_path])[0]
    assert (run.steps, run.best("reward"), run.final("reward"), run.best("kl")) == (3, 0.5, 0.4, 0.1)


# --------------------------------------------------------------------------- annotate
@pytest.mark.slow
def test_annotate_writes_the_outcome_on_top_and_nothing_else(real_runs, capsys):
    run = load_run(real_runs[1])
    config = Path(run.info.config_file)
    before_text = config.read_bytes()
    before = GRPOConfigLoader(config_path=config).to_dict()
    assert main(["runs", "annotate", str(run.path), "--note", "lr 1e-2 is too high\nreward flat"]) == 0
    after_text = config.read_bytes()
    block = after_text[: len(after_text) - len(before_text)].decode()
    assert after_text[len(block.encode()) :] == before_text  # byte for byte after the block
    lines = block.splitlines()
    assert lines[0].startswith("# Result 20") and "run b_lr1e-2_beta0.01 (finished, 3 steps)" in lines[0]
    assert (
        lines[1].startswith("# reward final ")
        and "best" in lines[1]
        and "kl final" in lines[1]
        and "runtime" in lines[1]
    )
    assert lines[2:] == ["# Note: lr 1e-2 is too high", "#   reward flat", "#"]
    assert GRPOConfigLoader(config_path=config).to_dict() == before  # still the same config
    assert "annotated" in capsys.readouterr().out
    # A second annotation goes above the first.
    main(["runs", "annotate", str(run.path)])
    assert config.read_text().count("# Result ") == 2 and config.read_bytes().endswith(after_text)


def test_annotate_keeps_odd_formatting_byte_for_byte(tmp_path, monkeypatch):
    """ruamel would drop the leading blank lines and re-indent the list: the block goes on
    top of the untouched text instead."""
    config = tmp_path / "odd.yaml"
    original = (
        "\n\n# my notes\nmode: local\ntraining:\n    learning_rate: 1.0e-4   # lr\nlogging:\n  report_to:\n  - none\n"
    )
    config.write_text(original)
    run_dir = fake_run(tmp_path / "runs", "odd", status="finished", config_file=str(config), global_step=2)
    (run_dir / "summary.json").write_text(
        json.dumps(
            {
                "final": {"reward": 0.25},
                "best": {"reward": 0.5},
                "train_seconds": 12.0,
                "eval": {"accuracy_before": 0.1, "accuracy_after": 0.3},
            }
        )
    )
    path, block = annotate_mod.annotate(run_dir, "ok")
    assert path == config
    text = config.read_text()
    assert text == block + original
    assert "reward final 0.25, best 0.5; eval accuracy 10.0% -> 30.0%; runtime 12 s" in block


def test_annotate_refuses_presets_and_missing_files(tmp_path, capsys):
    preset_run = fake_run(tmp_path, "preset", status="finished", config_file=None)
    with pytest.raises(ConfigError, match="used a preset"):
        annotate_mod.annotate(preset_run)
    gone_run = fake_run(tmp_path, "gone", status="finished", config_file=str(tmp_path / "deleted.yaml"))
    assert main(["runs", "annotate", str(gone_run)]) == 2
    assert "is gone" in capsys.readouterr().err
    shipped = fake_run(
        tmp_path, "shipped", status="finished", config_file=str(REPO_ROOT / "configs" / "grpo_cluster.yaml")
    )
    before = (REPO_ROOT / "configs" / "grpo_cluster.yaml").read_bytes()
    with pytest.raises(ConfigError, match="preset `grpo_cluster.yaml`"):
        annotate_mod.annotate(shipped)
    assert (REPO_ROOT / "configs" / "grpo_cluster.yaml").read_bytes() == before
    with pytest.raises(ConfigError, match="not a run directory"):
        annotate_mod.annotate(tmp_path)


def test_reading_commands_do_not_import_torch(tmp_path):
    fake_run(tmp_path / "runs", "x", status="finished")
    code = (
        "import sys\nfrom grpolab.cli.main import main\n"
        f"main(['runs', 'list', {str(tmp_path / 'runs')!r}])\n"
        f"main(['config', 'import', {str(REPO_ROOT / 'tests' / 'recipes' / 'trl_qwen_gsm8k.yaml')!r}])\n"
        "import grpolab.experiment.compare, grpolab.experiment.annotate, grpolab.experiment.sweep\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
