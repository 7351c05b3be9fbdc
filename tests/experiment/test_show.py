"""`grpolab runs show RUN [--completions] [--step N]`: summary, config origins, and the sampled
completions of completions.jsonl, read tolerantly; bad input is a usage error naming the flag."""

from __future__ import annotations

import json

import pytest

from grpolab.cli.main import main

COMPLETIONS = [
    {"step": 5, "prompt": "12+30=", "completion": "42", "rewards": {"numeric_match": 1.0}, "advantage": 0.71,
     "length": 2, "truncated": False},
    {"step": 5, "prompt": "12+30=", "completion": "41 and more" * 30, "rewards": {"numeric_match": 0.0},
     "advantage": -0.71, "length": 32, "truncated": True},
    {"step": 10, "prompt": [{"role": "user", "content": "7+8="}], "completion": "15",
     "rewards": {"numeric_match": 1.0}, "advantage": 0.0, "length": 2, "truncated": False},
]  # fmt: skip


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "runs" / "grpo_local_20260101-000000"
    run.mkdir(parents=True)
    info = {
        "run_name": run.name,
        "status": "finished",
        "global_step": 10,
        "config_file": "configs/mine.yaml",
        "git": {"commit": "abcdef0123456789", "dirty": False},
        "started": "2026-01-01T00:00:00+00:00",
        "ended": "2026-01-01T00:01:00+00:00",
    }
    (run / "run_info.json").write_text(json.dumps(info))
    summary = {"final": {"reward": 0.5, "kl": 0.02}, "best": {"reward": 0.75, "kl": 0.01}, "train_seconds": 58.2}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "overrides.yaml").write_text("training.learning_rate: 1.0e-4\nmodel.name_or_path: ./m\n")
    (run / "completions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in COMPLETIONS) + '{"step": 11, "pr')
    return run


def test_show_prints_summary_origins_and_says_completions_exist(run_dir, capsys):
    assert main(["runs", "show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "run       grpo_local_20260101-000000 (finished, 10 steps)" in out
    assert "config    configs/mine.yaml; commit abcdef01" in out and "training 58.2 s" in out
    metric_rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(("reward", "kl"))}
    assert metric_rows == {"reward": ["0.5", "0.75"], "kl": ["0.02", "0.01"]}
    assert "config origins: configs/mine.yaml (and the defaults), then:" in out
    assert "training.learning_rate  1.0e-4  --set / flag" in out
    assert "completions: 3 recorded (show them with --completions" in out


def test_show_completions_of_one_step(run_dir, capsys):
    assert main(["runs", "show", str(run_dir), "--step", "5"]) == 0
    out = capsys.readouterr().out
    assert "completions: 2 of 3 (steps 5, 10)" in out  # the torn last line is skipped
    assert "- step 5: rewards numeric_match 1; advantage 0.71, length 2" in out
    assert "- step 5: rewards numeric_match 0; advantage -0.71, length 32, truncated" in out
    long_line = next(line for line in out.splitlines() if "completion: 41 and more" in line)
    assert long_line.endswith("...") and len(long_line) < 200
    assert "7+8=" not in out
    assert main(["runs", "show", str(run_dir), "--completions", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "[{role: user, content: 7+8=}]" in out and "(2 more; --limit N shows more)" in out


def test_recorded_origins_are_shown_when_the_run_has_them(run_dir, capsys):
    info = json.loads((run_dir / "run_info.json").read_text())
    info["origins"] = {"training.learning_rate": "--set", "grpo.beta": "configs/mine.yaml:12"}
    (run_dir / "run_info.json").write_text(json.dumps(info))
    assert main(["runs", "show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    rows = out[out.index("config origins:\nKEY") :].splitlines()[2:4]
    assert [row.split() for row in rows] == [
        ["training.learning_rate", "--set"],
        ["grpo.beta", "configs/mine.yaml:12"],
    ]


def test_bad_input_is_a_usage_error_naming_the_flag(run_dir, tmp_path, capsys):
    assert main(["runs", "show", str(run_dir), "--step", "7"]) == 2
    err = capsys.readouterr().err
    assert "--step: no completions were recorded at step 7; recorded steps: 5, 10." in err and "--step 10" in err
    assert main(["runs", "show", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["runs", "show", str(run_dir), "--limit", "0"])
    assert info.value.code == 2


def test_a_run_without_completions_or_overrides(run_dir, capsys):
    (run_dir / "completions.jsonl").unlink()
    (run_dir / "overrides.yaml").write_text("{}\n")
    assert main(["runs", "show", str(run_dir), "--completions"]) == 0
    out = capsys.readouterr().out
    assert "every value from configs/mine.yaml (and the defaults); no --set or flags" in out
    assert "completions: none recorded (logging.save_completions writes completions.jsonl)" in out
