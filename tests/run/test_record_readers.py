"""Every record grpolab reads back goes through one typed, tolerant reader (issue 21, section 7).

run_info.json, summary.json, metrics.jsonl and trainer_state.json: a field of the wrong type
marks the run unreadable with the file and field named, in `runs list`, `compare` and `doctor`,
never a traceback. The generator corrupts each field of each record in turn, with each kind of
wrong value."""

from __future__ import annotations

import dataclasses
import json
import socket
from types import SimpleNamespace

import pytest

from grpolab.cli.main import main
from grpolab.config import GRPOConfigLoader
from grpolab.config.yaml_io import dump_yaml
from grpolab.run import metrics as run_metrics
from grpolab.run.record import RunInfo, Summary, TrainerState, fits
from grpolab.train import resume


@pytest.fixture(autouse=True)
def in_tmp(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # compare's plot lands here


WRONG = ["corrupt", 12345, 1.5, True, [1, "x"], {"a": "b"}, {"reward": "high"}, ["a", "b"]]


def _run(folder, name="run", reward=0.5):
    run = folder / name
    (run / "checkpoint-2").mkdir(parents=True)
    info = {
        "run_name": name,
        "command": ["grpolab", "train"],
        "config_file": "mine.yaml",
        "mode": "local",
        "model": "tiny",
        "git": {"commit": "abc", "dirty": False},
        "packages": {"trl": "0.1"},
        "host": {"hostname": socket.gethostname()},
        "world_size": 1,
        "device": "cpu",
        "threads_per_process": 1,
        "effective_batch_size": 2,
        "derived": {},
        "dataset": {"rows": 8},
        "config_sha256": "0" * 64,
        "origins": {},
        "status": "finished",
        "pid": 1,
        "cwd": str(folder),
        "started": "2026-01-01T00:00:00+00:00",
        "resumed": ["2026-01-01T00:10:00+00:00"],
        "trl_args": {},
        "ended": "2026-01-01T00:20:00+00:00",
        "exit_code": 0,
        "global_step": 2,
        "error": None,
    }
    summary = {
        "final": {"reward": reward, "loss": 0.1},
        "best": {"reward": reward, "loss": 0.1},
        "steps": 2,
        "status": "finished",
        "train_seconds": 3.0,
        "global_step": 2,
        "eval": {"accuracy_before": 0.1, "accuracy_after": 0.2},
    }
    records = [{"step": s, "epoch": s / 4, "time": 1000.0 + s, "reward": reward, "loss": 0.1} for s in (1, 2)]
    state = {"global_step": 2, "max_steps": 2, "num_train_epochs": 1, "epoch": 0.5, "log_history": []}
    (run / "run_info.json").write_text(json.dumps(info))
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "checkpoint-2" / "trainer_state.json").write_text(json.dumps(state))
    (run / "checkpoint-2" / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    loader = GRPOConfigLoader.from_dict({"mode": "local", "training": {"max_steps": 2}})
    (run / "resolved_config.yaml").write_text(dump_yaml(loader.to_dict()))
    return run


def _fields(record) -> list[tuple[str, str]]:
    return [(f.name, f.type) for f in dataclasses.fields(record) if f.name not in ("extra", "unreadable")]


# (file, field, annotation) of every typed field of every record read back
CASES = [
    *[("run_info.json", name, kind) for name, kind in _fields(RunInfo)],
    *[("summary.json", name, kind) for name, kind in _fields(Summary)],
    *[("metrics.jsonl", name, kind) for name, kind in run_metrics.TYPED.items()],
    *[("checkpoint-2/trainer_state.json", name, kind) for name, kind in _fields(TrainerState)],
]


def _corrupt(run, file: str, name: str, value) -> None:
    path = run / file
    if file == "metrics.jsonl":
        lines = path.read_text().splitlines()
        record = json.loads(lines[1])
        record[name] = value
        lines[1] = json.dumps(record)
        path.write_text("\n".join(lines) + "\n")
    else:
        data = json.loads(path.read_text())
        data[name] = value
        path.write_text(json.dumps(data))


@pytest.mark.parametrize(("file", "name", "kind"), CASES, ids=[f"{f}:{n}" for f, n, _ in CASES])
def test_a_wrong_type_in_any_field_is_named_never_a_traceback(file, name, kind, tmp_path, capsys):
    wrong = [v for v in WRONG if not fits(v, kind) and not (name == "step" and isinstance(v, float))]
    assert wrong, f"no wrong value for {file}:{name} ({kind})"
    for i, value in enumerate(wrong):
        folder = tmp_path / f"case{i}"
        run = _run(folder)
        other = _run(folder, "other", reward=0.7)
        _corrupt(run, file, name, value)
        shown = f"`{name}`"

        assert main(["runs", "list", str(folder)]) == 0
        out = capsys.readouterr().out
        if file != "checkpoint-2/trainer_state.json":  # runs list does not read checkpoints
            assert "unreadable" in out and shown in out and file.split("/")[-1] in out, out

        # --resume reads the checkpoint's trainer_state and run_info: a wrong field is no crash
        loader = GRPOConfigLoader(config_path=run / "resolved_config.yaml")
        resume.finished(SimpleNamespace(resume=str(run)), loader)
        if i > 0:  # compare draws a plot (slow): once per field
            continue
        code = main(["compare", str(run), str(other), "--out", str(folder / "c.png")])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        if file != "checkpoint-2/trainer_state.json":
            assert f"unreadable {run}" in captured.err and shown in captured.err
            assert "other" in captured.out

        assert main(["doctor", str(run)]) == 0
        out = capsys.readouterr().out
        if file != "checkpoint-2/trainer_state.json":
            assert "unreadable record" in out and shown in out, out


def test_a_good_run_reads_without_problems(tmp_path, capsys):
    run = _run(tmp_path)
    assert main(["runs", "list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "unreadable" not in out and "finished" in out
    assert RunInfo.load(run).unreadable == [] and Summary.load(run).unreadable == []
    assert TrainerState.load(run / "checkpoint-2").unreadable == []
    assert run_metrics.read_checked(run)[1] == []


def test_the_issue_example_a_string_step_count(tmp_path, capsys):
    """`global_step: "2"` in run_info.json: `runs list` says which field, nothing crashes."""
    run = _run(tmp_path)
    _corrupt(run, "run_info.json", "global_step", "2")
    assert main(["runs", "list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "run_info.json: `global_step` should be a whole number >= 0 or null, got '2'" in out


def test_compare_writes_its_plot_only_where_asked(tmp_path, capsys, monkeypatch):
    """Issue 21 section 8: compare left compare.png in whatever folder it was run from."""
    pytest.importorskip("matplotlib")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    first, second = _run(tmp_path / "runs", "a"), _run(tmp_path / "runs", "b", reward=0.7)
    assert main(["compare", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert list(work.iterdir()) == []
    plots = [p for p in (first / "compare.png", second / "compare.png") if p.exists()]
    assert len(plots) == 1 and f"plot: {plots[0]}" in out
