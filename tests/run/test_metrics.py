"""grpolab.run.metrics: one tolerant reader, truncation on --resume that survives a torn last
line (a hard kill mid-write), summaries, and "lower is better" in one place."""

from __future__ import annotations

import json
import shutil

import pytest

from grpolab.run import metrics
from grpolab.run.record import Summary

RECORDS = [
    {"step": 1, "epoch": 0.1, "time": 1.0, "reward": 0.2, "kl": 0.3, "loss": 1.0},
    {"step": 2, "epoch": 0.2, "time": 2.0, "reward": 0.6, "kl": 0.1, "loss": 2.0},
    {"step": 3, "epoch": 0.3, "time": 3.0, "reward": 0.4, "kl": 0.2, "loss": float("nan")},
]
TORN = '{"step": 4, "rew'


def write(run_dir, records, tail: str = "") -> None:
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_append_and_read_round_trip(tmp_path):
    for record in RECORDS:
        metrics.append(tmp_path, record)
    read = metrics.read(tmp_path)
    assert [r["step"] for r in read] == [1, 2, 3] and read[0]["reward"] == 0.2
    assert metrics.read(tmp_path / "nowhere") == []


def test_read_skips_torn_blank_and_non_object_lines(tmp_path):
    write(tmp_path, RECORDS[:2], "\n[1, 2]\n" + TORN)
    assert [r["step"] for r in metrics.read(tmp_path)] == [1, 2]
    records, torn = metrics.read_counted(tmp_path / "metrics.jsonl")
    assert len(records) == 2 and torn == 2  # the list and the torn line
    assert metrics.read_counted(tmp_path / "missing.jsonl") == ([], 0)


def test_truncate_after_drops_a_torn_last_line_and_later_steps(tmp_path):
    """The resume bug: a torn last line made the truncation raise JSONDecodeError."""
    write(tmp_path, RECORDS, TORN)
    result = metrics.truncate_after(tmp_path, 2)
    assert (result.kept, result.after_step, result.torn, result.dropped) == (2, 1, 1, 2)
    assert "dropped 1 torn line" in result.note() and "kept 2 records" in result.note()
    text = (tmp_path / "metrics.jsonl").read_text()
    assert text.endswith("\n") and [json.loads(line)["step"] for line in text.splitlines()] == [1, 2]
    # Nothing torn: no note, and a missing file stays missing.
    assert metrics.truncate_after(tmp_path, 1).note() is None
    assert metrics.truncate_after(tmp_path / "empty", 5) == metrics.Truncation(0, 0, 0)
    assert not (tmp_path / "empty" / "metrics.jsonl").exists()


def test_truncation_note_says_once_what_it_dropped(tmp_path):
    """metrics.truncate_after (what --resume calls) drops the torn line, and its note says so once."""
    write(tmp_path, RECORDS, TORN)
    note = metrics.truncate_after(tmp_path, 3).note()
    assert note.count("torn line") == 1
    assert [r["step"] for r in metrics.read(tmp_path)] == [1, 2, 3]


def test_summarize_final_best_and_steps():
    summary = metrics.summarize(RECORDS + [{"step": 3, "flag": True, "name": "x"}])
    assert isinstance(summary, Summary)
    assert summary.final == {"reward": 0.4, "kl": 0.2, "loss": 2.0}  # NaN is skipped, bools and text too
    assert summary.best == {"reward": 0.6, "kl": 0.1, "loss": 1.0}
    assert summary.steps == 3 and summary.to_dict() == {"final": summary.final, "best": summary.best, "steps": 3}
    assert metrics.summarize([]).to_dict() == {"final": {}, "best": {}, "steps": 0}


@pytest.mark.parametrize(
    "key, lower",
    [("loss", True), ("kl", True), ("clip_ratio/region_mean", True), ("train_runtime", True)]
    + [("reward", False), ("eval/accuracy", False), ("entropy", False)],
)
def test_lower_is_better(key, lower):
    assert metrics.lower_is_better(key) is lower


def test_completions_are_read_tolerantly_and_by_step(tmp_path):
    lines = [
        {"step": 1, "prompt": "1+1=", "completion": "2", "rewards": {"r": 1.0}, "advantage": 0.5},
        {"step": 2, "prompt": "2+2=", "completion": "5", "rewards": {"r": 0.0}, "advantage": -0.5},
    ]
    (tmp_path / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 3, "pro')
    assert [c["completion"] for c in metrics.read_completions(tmp_path)] == ["2", "5"]
    assert [c["prompt"] for c in metrics.read_completions(tmp_path, step=2)] == ["2+2="]


@pytest.mark.slow
def test_resume_after_a_hard_kill_with_a_torn_line(tiny_gpt2, fast_config, train):
    """--resume of a run whose metrics.jsonl ends in a torn line: it resumes, says so once, and
    the file has no torn line afterwards (it died with a raw JSONDecodeError before)."""
    cfg = fast_config(tiny_gpt2, {"training": {"max_steps": 2, "save_steps": 1}})
    first = train("--config", cfg, "--run-name", "killed")
    assert first.code == 0, first
    run_dir = first.run_dir
    # Killed hard after step 2 was logged but before its checkpoint and its end were written (a
    # finished run is not resumed at all: tests/train/test_resume_finished.py).
    shutil.rmtree(run_dir / "checkpoint-2")
    info = json.loads((run_dir / "run_info.json").read_text())
    (run_dir / "run_info.json").write_text(json.dumps({**info, "status": "interrupted", "global_step": 1}))
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write(TORN)
    resumed = train("--resume", run_dir)
    assert resumed.code == 0, resumed
    said = resumed.out + resumed.err
    assert said.count("torn line") == 1 and "Traceback" not in said
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    assert json.loads((run_dir / "run_info.json").read_text())["status"] == "finished"
