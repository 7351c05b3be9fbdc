"""Models and data fail early and clearly: a model folder without tokenizer files, a split that
a local file does not have, a model given through --set."""

from __future__ import annotations

import json
import shutil

from grpolab.train.request import TrainRequest


def test_a_model_folder_without_tokenizer_files_is_refused(tiny_gpt2, tmp_path, fast_config, train):
    weights_only = tmp_path / "weights_only"
    shutil.copytree(tiny_gpt2, weights_only)
    for path in weights_only.iterdir():
        if "token" in path.name or path.name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
            path.unlink()
    result = train("--config", fast_config(str(weights_only)), "--dry-run")
    assert result.code == 2, result
    assert "has no tokenizer files" in result.err and "tokenizer.save_pretrained" in result.err


def test_a_local_file_has_one_split(tiny_gpt2, tmp_path, fast_config, train):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+1=", "answer": str(a + 1)}) + "\n" for a in range(10, 20)))
    result = train(
        "--config", fast_config(tiny_gpt2, {"data": {"dataset": str(data), "eval_split": "test"}}), "--dry-run"
    )
    assert result.code == 2, result
    assert "data.eval_split: `test` is not a split of the local file" in result.err and "data.test_size" in result.err


def test_a_model_given_through_set_is_seen():
    assert TrainRequest(overrides=("model={name_or_path: ./m}",)).gives_model()
    assert TrainRequest(overrides=("model.name_or_path=./m",)).gives_model()
    assert not TrainRequest(overrides=("model.dtype=float32",)).gives_model()
