"""A finished run stays finished (issue 21, section 7): `--resume` of a run that trained as far
as its config asks says so and changes nothing; `--resume RUN --set training.max_steps=N` trains
it longer, each step logged once."""

from __future__ import annotations

import json

import pytest
from conftest import fast_settings


def _files(run_dir) -> dict:
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _info(run_dir) -> dict:
    return json.loads((run_dir / "run_info.json").read_text())


def test_resume_of_a_finished_run_changes_nothing_and_max_steps_trains_longer(
    tiny_gpt2, tmp_path, train, jsonl, write_config
):
    config = write_config(fast_settings(tiny_gpt2, tmp_path / "runs", {"training": {"max_steps": 2}}))
    first = train("--config", config)
    assert first.code == 0, first
    run_dir = first.run_dir
    assert _info(run_dir)["global_step"] == 2 and (run_dir / "checkpoint-2").is_dir()
    before = _files(run_dir)

    # The example: this printed "resuming from checkpoint-2", added checkpoint-3 with
    # unchanged weights, appended duplicate metric rows and set global_step 3.
    again = train("--resume", run_dir)
    assert again.code == 0, again
    assert f"nothing to resume: {run_dir} is finished (it trained 2 steps, training.max_steps 2)" in again.out
    assert f"To train longer: grpolab train --resume {run_dir} --set training.max_steps=4" in again.out
    assert "resuming from" not in again.out
    assert _files(run_dir) == before  # not one byte changed, no file added

    longer = train("--resume", run_dir, "--set", "training.max_steps=4")
    assert longer.code == 0, longer
    assert "resuming from checkpoint-2" in longer.out
    info = _info(run_dir)
    assert info["status"] == "finished" and info["global_step"] == 4 and len(info["resumed"]) == 1
    rows = [r for r in jsonl(run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # each step once
    # The linear schedule is the one for max_steps 4 from the resumed step: the first extra step
    # trained at lr 0 when the finished run's scheduler came back as it ended.
    rate = {r["step"]: r["learning_rate"] for r in rows}
    assert rate[3] == pytest.approx(rate[1] * 2 / 4) and rate[4] == pytest.approx(rate[1] / 4) and rate[4] > 0
    assert (run_dir / "checkpoint-4").is_dir() and not (run_dir / "checkpoint-5").exists()
    assert "max_steps: 4" in (run_dir / "resolved_config.yaml").read_text()  # the record says how far

    done = train("--resume", run_dir)
    assert done.code == 0 and "is finished (it trained 4 steps, training.max_steps 4)" in done.out


def test_resume_still_refuses_other_changes_without_force(tiny_gpt2, tmp_path, train, write_config):
    config = write_config(fast_settings(tiny_gpt2, tmp_path / "runs", {"training": {"max_steps": 1}}))
    first = train("--config", config)
    assert first.code == 0, first
    refused = train("--resume", first.run_dir, "--set", "training.max_steps=2", "--set", "grpo.beta=0.1")
    assert refused.code == 2 and "grpo.beta" in refused.err and "training.max_steps" not in refused.err
