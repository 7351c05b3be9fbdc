"""run_info.json always ends with a status: a crash while building the trainer or after
trainer.train() returns (final save, scoring, summary) is recorded as failed with its error."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def _info(runs) -> dict:
    (run_dir,) = list(runs.iterdir())
    return json.loads((run_dir / "run_info.json").read_text())


def test_a_crash_while_building_the_trainer_is_recorded_as_failed(
    tiny_gpt2, fast_config, train, monkeypatch, tmp_path
):
    import trl

    def broken(*args, **kwargs):
        raise RuntimeError("trainer could not be built")

    monkeypatch.setattr(trl, "GRPOTrainer", broken)
    with pytest.raises(RuntimeError, match="could not be built"):
        train("--config", fast_config(tiny_gpt2))
    info = _info(tmp_path / "runs")
    assert info["status"] == "failed" and info["error"] == "RuntimeError: trainer could not be built"
    assert info["exit_code"] == 1 and info["ended"]


def test_a_crash_after_training_returns_is_recorded_as_failed(tiny_gpt2, fast_config, train, monkeypatch, tmp_path):
    from grpolab.train import trainer

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(trainer, "save_final_model", disk_full)
    result = train("--config", fast_config(tiny_gpt2))  # a failed write is a message, not a traceback
    assert result.code == 1 and "No space left on device" in result.out + result.err, result
    info = _info(tmp_path / "runs")
    assert info["status"] == "failed" and "No space left on device" in info["error"]


def test_runs_list_shows_failed_not_interrupted(tiny_gpt2, fast_config, train, monkeypatch, tmp_path):
    import trl

    from grpolab.experiment.runs import find_runs

    monkeypatch.setattr(trl, "GRPOTrainer", lambda *a, **k: (_ for _ in ()).throw(ValueError("bad")))
    with pytest.raises(ValueError):
        train("--config", fast_config(tiny_gpt2))
    (run,) = find_runs([tmp_path / "runs"])
    assert run.status == "failed"
