"""`eval: {dataset: held.jsonl}`: a separate held-out file is its own split (issue 21, section 3).

It was refused with the fix `eval.split: test`, which then failed at training (a local file has
one split). Now it validates with no split and trains, scoring every row of the file."""

from __future__ import annotations

import json

from grpolab.config import GRPOConfigLoader


def _rows(n: int, start: int = 10) -> str:
    return "".join(json.dumps({"prompt": f"{a}+{a}=", "answer": str(2 * a)}) + "\n" for a in range(start, start + n))


def test_a_held_out_file_validates_without_a_split(tmp_path):
    for name in ("held.jsonl", "held.json", "held.csv", "held.parquet", "HELD.JSONL"):
        loader = GRPOConfigLoader(data={"mode": "local", "eval": {"dataset": name, "every_steps": 2}})
        assert loader.config.eval.split is None


def test_a_hub_eval_dataset_still_needs_a_split():
    import pytest

    from grpolab.config import ConfigError

    with pytest.raises(ConfigError, match="needs held-out prompts"):
        GRPOConfigLoader(data={"mode": "local", "eval": {"dataset": "openai/gsm8k", "every_steps": 2}})


def test_a_held_out_file_trains_and_is_scored_whole(tmp_path, tiny_gpt2, fast_config, train, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_text(_rows(12))
    (tmp_path / "held.jsonl").write_text(_rows(5, start=60))
    cfg = fast_config(
        tiny_gpt2,
        {"data": {"dataset": "train.jsonl"}, "eval": {"dataset": "held.jsonl", "every_steps": 2}},
    )
    result = train("--config", cfg)
    assert result.code == 0, result
    assert "held.jsonl (a held-out file)" in result.out
    summary = json.loads((result.run_dir / "summary.json").read_text())["eval"]
    assert summary["prompts"] == 5 and summary["after"] is not None
