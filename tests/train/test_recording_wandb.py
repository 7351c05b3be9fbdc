"""WandB, offline: the nested resolved config, derived values, run name and config artifact
reach the run's .wandb file; `report_to: [none]` and WANDB_MODE=disabled write nothing."""

from __future__ import annotations

import json
import time

import pytest
from wandb_offline import config_from_records, read_payloads, read_records


def _offline_run_records(run_dir, timeout: float = 60.0):
    """The run's records, once the file is complete: wandb's service process writes it and may
    still be flushing when run.finish() has returned (seen on a loaded machine)."""
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    deadline = time.time() + timeout
    while True:
        records = read_records(files[0])
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.time() > deadline:
            return records
        time.sleep(0.2)


def test_offline_run_records_nested_config_name_and_artifact(tiny_gpt2, tmp_path, monkeypatch, fast_config, train):
    monkeypatch.chdir(tmp_path)
    cfg = fast_config(
        tiny_gpt2,
        {
            "logging": {"report_to": ["wandb"], "project": "grpolab-tests", "tags": ["unit"]},
            "training": {"learning_rate": 2.0e-5, "gradient_accumulation_steps": 2},
            "grpo": {"beta": 0.02, "generation_batch_size": 4},
            "data": {"eval_split": "eval", "eval_samples": 4, "eval_every_steps": 1},
        },
    )
    result = train("--config", cfg)
    assert result.code == 0, result
    assert "wandb: offline" in result.out  # no API key: offline, and it says so
    records = _offline_run_records(result.run_dir)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert "run" in kinds and "history" in kinds and "artifact" in kinds

    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == result.run_dir.name
    assert run.project == "grpolab-tests"
    assert "unit" in run.tags and "local" in run.tags

    config = config_from_records(records)
    # The nested resolved config, as sections...
    assert config["training"]["learning_rate"] == 2.0e-5
    assert config["grpo"]["beta"] == 0.02
    assert config["model"]["name_or_path"] == tiny_gpt2
    assert config["rewards"] == [{"name": "numeric_match", "weight": 1.0, "kwargs": {}}]
    # ... the derived values ...
    assert config["derived"]["effective_batch_size"] == 2 * 2 * 1
    assert config["derived"]["world_size"] == 1
    info = json.loads((result.run_dir / "run_info.json").read_text())
    assert config["derived"] == info["derived"]
    # ... and TRL's flat arguments, added by the Trainer's WandbCallback to the same run.
    assert config["learning_rate"] == 2.0e-5 and config["beta"] == 0.02 and config["run_name"] == result.run_dir.name

    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert len(artifacts) == 1
    assert artifacts[0].type == "config" and artifacts[0].name == f"config-{result.run_dir.name}"
    assert {c.path for c in artifacts[0].manifest.contents} == {"resolved_config.yaml", cfg.name}

    history = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    logged = {item.nested_key[0] if item.nested_key else item.key for h in history for item in h.item}
    assert "train/loss" in logged and "train/reward" in logged
    assert "eval/accuracy" in logged and "eval/train_seconds" in logged  # data.eval_every_steps
    assert not (tmp_path / "wandb").exists()  # everything inside the run directory


def test_report_to_none_writes_no_wandb_folder(tiny_gpt2, tmp_path, monkeypatch, fast_config, train):
    monkeypatch.chdir(tmp_path)
    result = train(
        "--config", fast_config(tiny_gpt2, {"logging": {"report_to": ["none"]}, "training": {"max_steps": 1}})
    )
    assert result.code == 0, result
    assert not list(tmp_path.rglob("wandb")) and "wandb: offline" not in result.out


def test_wandb_mode_disabled_writes_no_wandb_folder(tiny_gpt2, tmp_path, monkeypatch, fast_config, train):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    result = train(
        "--config", fast_config(tiny_gpt2, {"logging": {"report_to": ["wandb"]}, "training": {"max_steps": 1}})
    )
    assert result.code == 0, result
    assert not list(tmp_path.rglob("wandb")), list(tmp_path.rglob("wandb"))


def test_reader_reassembles_records_split_across_blocks(tmp_path):
    """The helper itself: FIRST/MIDDLE/LAST fragments and block trailers."""
    import struct
    import zlib

    from wandb_offline import BLOCK, HEADER

    def record(kind, body):
        return struct.pack("<IHB", zlib.crc32(body), len(body), kind) + body

    big = bytes(range(256)) * 200  # 51,200 bytes: spans two blocks
    data = bytearray(b":W&B" + b"\x00\x01\x00")
    data += record(1, b"small")
    room = BLOCK - len(data) - HEADER
    data += record(2, big[:room])
    rest = big[room:]
    data += record(4, rest)  # starts the second block (its header is at offset BLOCK exactly)
    # Pad the block with a 3-byte trailer, then one more record in the third block.
    left = BLOCK - len(data) % BLOCK
    data += record(1, b"x" * (left - HEADER - 3)) + b"\x00" * 3
    data += record(1, b"last")
    path = tmp_path / "run.wandb"
    path.write_bytes(bytes(data))
    payloads = read_payloads(path)
    assert payloads[0] == b"small" and payloads[1] == big and payloads[-1] == b"last"


@pytest.mark.slow
def test_resume_continues_the_same_wandb_run(tiny_gpt2, tmp_path, monkeypatch, fast_config, train):
    monkeypatch.chdir(tmp_path)
    cfg = fast_config(tiny_gpt2, {"logging": {"report_to": ["wandb"]}, "training": {"save_steps": 1}})
    first = train("--config", cfg)
    assert first.code == 0, first
    wandb_id = json.loads((first.run_dir / "run_info.json").read_text())["wandb_id"]
    again = train("--resume", first.run_dir, "--set", "training.max_steps=3")  # a finished run trains longer
    assert again.code == 0, again
    assert json.loads((first.run_dir / "run_info.json").read_text())["wandb_id"] == wandb_id
    runs = sorted((first.run_dir / "wandb").glob("offline-run-*"))
    # One WandB run, resumed: each attempt's folder holds that run's id (WandB adds "-1" to a
    # folder name already taken when both attempts start within the same second).
    assert len(runs) == 2 and all((run / f"run-{wandb_id}.wandb").is_file() for run in runs), runs
