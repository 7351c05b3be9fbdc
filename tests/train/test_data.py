"""Training data end to end: each dataset source, column mapping, chat prompts with a system
prompt, max_samples, prompts too long for the context, and missing columns.

A recording reward (a user reward by file path) writes every prompt/answer it is given to a JSON
file, so the tests see exactly what reached TRL's reward functions.
"""

from __future__ import annotations

import json

import pytest

RECORDER = """
import json, os

def record(prompts, completions, answer, **kwargs):
    with open(os.environ["GRPOLAB_TEST_RECORD"], "a") as handle:
        for p, a in zip(prompts, answer):
            handle.write(json.dumps({"prompt": p, "answer": a}) + "\\n")
    return [0.0] * len(completions)
"""

ROWS = [{"question": f"{a}+{a}=", "solution": str(2 * a), "source": "file"} for a in range(10, 22)]


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    """(reward spec, read()) for a reward that records the prompts and answers it sees."""
    path = tmp_path / "recorder.py"
    path.write_text(RECORDER)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("GRPOLAB_TEST_RECORD", str(record))

    def read():
        return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []

    return f"{path}:record", read


def _write_rows(path, rows, fmt):
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = datasets.Dataset.from_list(rows)
    if fmt == "jsonl":
        dataset.to_json(str(path), lines=True)
    elif fmt == "json":
        path.write_text(json.dumps(rows))  # a JSON array of records
    elif fmt == "csv":
        dataset.to_csv(str(path), index=False)
    elif fmt == "parquet":
        dataset.to_parquet(str(path))
    return path


MAPPING = {"question": "prompt", "solution": "answer"}


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_local_file_with_column_mapping(fmt, tiny_gpt2, tmp_path, recorder, fast_config, train):
    spec, read = recorder
    data = _write_rows(tmp_path / f"rows.{fmt}", ROWS, fmt)
    cfg = fast_config(tiny_gpt2, {"data": {"dataset": str(data), "columns": MAPPING}, "rewards": [{"name": spec}]})
    result = train("--config", cfg)
    assert result.code == 0, result
    seen = read()
    assert len(seen) == 2 * 2  # 2 steps x 1 prompt x 2 generations
    by_prompt = {r["question"]: r["solution"] for r in ROWS}
    for rec in seen:
        assert rec["prompt"] in by_prompt and str(rec["answer"]) == by_prompt[rec["prompt"]]
    info = json.loads((result.run_dir / "run_info.json").read_text())
    assert info["dataset"] == {"rows": 8, "dropped_too_long": 0}  # max_samples: 8 of 12


@pytest.mark.parametrize("layout", ["data/train-00000-of-00001.parquet", "train.jsonl"])
def test_hub_style_dataset_folder(layout, tiny_gpt2, tmp_path, recorder, fast_config, train):
    """No network here: a folder laid out like a Hub dataset repo goes through the same
    `datasets.load_dataset(name, config_name, split=...)` call as a Hub id."""
    spec, read = recorder
    repo = tmp_path / "my-org__my-dataset"
    fmt = layout.rsplit(".", 1)[1]
    _write_rows(repo / layout, ROWS, fmt)
    _write_rows(
        repo / layout.replace("train", "test"), [{"question": "1+1=", "solution": "2", "source": "test"}] * 4, fmt
    )
    cfg = fast_config(
        tiny_gpt2, {"data": {"dataset": str(repo), "columns": MAPPING, "split": "test"}, "rewards": [{"name": spec}]}
    )
    result = train("--config", cfg)
    assert result.code == 0, result
    assert {r["prompt"] for r in read()} == {"1+1="}  # the `test` split, not `train`
    assert f"data         {repo} [test]: 4 prompts" in result.out

    missing = train("--config", cfg, "--set", "data.split=validation", "--dry-run")
    assert missing.code == 2
    # a local folder is named as one, not as a Hub dataset (issue 21, section 8)
    assert "could not load the local folder" in missing.err and "validation" in missing.err


def test_builtin_addition_and_max_samples(tiny_gpt2, recorder, fast_config, train):
    spec, read = recorder
    cfg = fast_config(
        tiny_gpt2, {"data": {"dataset": "builtin:addition", "max_samples": 3}, "rewards": [{"name": spec}]}
    )
    result = train("--config", cfg)
    assert result.code == 0, result
    assert "data         builtin:addition [train]: 3 prompts" in result.out
    for rec in read():
        a, b = rec["prompt"].rstrip("=").split("+")
        assert int(rec["answer"]) == int(a) + int(b)
    info = json.loads((result.run_dir / "run_info.json").read_text())
    assert info["dataset"]["rows"] == 3


def test_chat_prompts_with_system_prompt_on_a_chat_model(tiny_llama, tmp_path, recorder, fast_config, train):
    spec, read = recorder
    rows = [{"prompt": [{"role": "user", "content": f"{a}+1="}], "answer": str(a + 1)} for a in range(10, 16)]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = fast_config(
        tiny_llama,
        {
            "data": {"dataset": str(data), "system_prompt": "answer with a number"},
            "rewards": [{"name": spec}, {"name": "numeric_match"}],
        },
    )
    result = train("--config", cfg)
    assert result.code == 0, result
    seen = read()
    assert seen
    for rec in seen:
        system, user = rec["prompt"]
        assert system == {"role": "system", "content": "answer with a number"}
        assert user["role"] == "user" and int(user["content"].rstrip("=").split("+")[0]) + 1 == int(rec["answer"])
    assert (result.run_dir / "model" / "tokenizer_config.json").exists()


def test_string_prompts_with_system_prompt_become_chat(tiny_llama, recorder, fast_config, train):
    spec, read = recorder
    cfg = fast_config(
        tiny_llama, {"data": {"system_prompt": "be brief", "max_samples": 4}, "rewards": [{"name": spec}]}
    )
    result = train("--config", cfg)
    assert result.code == 0, result
    for rec in read():
        assert rec["prompt"][0] == {"role": "system", "content": "be brief"}
        assert rec["prompt"][1]["role"] == "user" and rec["prompt"][1]["content"].endswith("=")


def test_system_prompt_needs_a_chat_template(tiny_gpt2, fast_config, train):
    result = train("--config", fast_config(tiny_gpt2, {"data": {"system_prompt": "be brief"}}), "--dry-run")
    assert result.code == 2
    assert "data.system_prompt" in result.err and "chat template" in result.err


def test_too_long_prompts_are_dropped_and_counted(tiny_gpt2, tmp_path, recorder, fast_config, train):
    spec, read = recorder
    # Context 64, completions of up to 4 tokens: prompts over 60 characters (= tokens) cannot fit.
    short = [{"prompt": f"{a}+1=", "answer": str(a + 1)} for a in range(10, 15)]
    long = [{"prompt": "9" * 58 + f"{a}=", "answer": "0"} for a in range(10, 13)]  # 61 tokens
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in short + long))
    cfg = fast_config(tiny_gpt2, {"data": {"dataset": str(data), "max_samples": None}, "rewards": [{"name": spec}]})
    result = train("--config", cfg)
    assert result.code == 0, result
    assert "5 prompts (3 dropped as too long; longest kept 5 tokens)" in result.out
    info = json.loads((result.run_dir / "run_info.json").read_text())
    assert info["dataset"] == {"rows": 5, "dropped_too_long": 3}
    assert all(len(r["prompt"]) <= 60 for r in read())

    data.write_text("".join(json.dumps(r) + "\n" for r in long))
    none_fit = train("--config", cfg, "--dry-run")
    assert none_fit.code == 2
    assert "no prompt fits" in none_fit.err and "61 tokens" in none_fit.err and "context of 64" in none_fit.err
    # 3 completion tokens would fit, but cannot answer: the fix names what can work.
    assert "use shorter prompts, or a model with a longer context than 64 tokens" in none_fit.err


def test_missing_reward_column_names_it_and_the_available_ones(tiny_gpt2, tmp_path, fast_config, train):
    data = _write_rows(tmp_path / "rows.jsonl", ROWS, "jsonl")
    result = train(
        "--config",
        fast_config(tiny_gpt2, {"data": {"dataset": str(data), "columns": {"question": "prompt"}}}),
        "--dry-run",
    )
    assert result.code == 2
    assert "reward `numeric_match` reads column(s) answer" in result.err
    assert "it has: prompt, solution, source" in result.err


def test_missing_prompt_column_and_bad_mapping(tiny_gpt2, tmp_path, fast_config, train):
    data = _write_rows(tmp_path / "rows.csv", ROWS, "csv")
    no_prompt = train(
        "--config",
        fast_config(tiny_gpt2, {"data": {"dataset": str(data), "columns": {"solution": "answer"}}}),
        "--dry-run",
    )
    assert no_prompt.code == 2
    assert "no `prompt` column; it has: question, answer, source" in no_prompt.err

    bad_map = train(
        "--config",
        fast_config(tiny_gpt2, {"data": {"dataset": str(data), "columns": {"query": "prompt"}}}),
        "--dry-run",
    )
    assert bad_map.code == 2
    assert "source column(s) query not in the dataset; it has: question, solution, source" in bad_map.err


def test_missing_data_file(tiny_gpt2, tmp_path, fast_config, train):
    result = train(
        "--config", fast_config(tiny_gpt2, {"data": {"dataset": str(tmp_path / "absent.jsonl")}}), "--dry-run"
    )
    assert result.code == 2
    assert "absent.jsonl` not found" in result.err


def test_eval_split_may_be_a_second_local_file(tiny_gpt2, tmp_path, fast_config, train):
    train_file = _write_rows(tmp_path / "train.jsonl", ROWS, "jsonl")
    eval_file = _write_rows(tmp_path / "held_out.jsonl", ROWS[:3], "jsonl")
    data = {"dataset": str(train_file), "eval_split": str(eval_file), "columns": MAPPING}
    result = train("--config", fast_config(tiny_gpt2, {"data": data}), "--dry-run")
    assert result.code == 0, result.err
    assert "held-out     3 prompts" in result.out


def test_held_out_rows_without_an_answer_are_scored_by_the_rewards(tiny_gpt2, tmp_path, fast_config, train):
    """No `answer` column: the held-out prompts are still evaluated, by the rewards (no greedy accuracy)."""
    train_file = _write_rows(tmp_path / "train.jsonl", ROWS, "jsonl")
    eval_file = _write_rows(tmp_path / "held_out.jsonl", [{"question": "1+1="}], "jsonl")
    data = {"dataset": str(train_file), "eval_split": str(eval_file), "columns": {"question": "prompt"}}
    result = train("--config", fast_config(tiny_gpt2, {"data": data, "rewards": [{"name": "format"}]}), "--dry-run")
    assert result.code == 0, result
    assert "held-out     1 prompts" in result.out


def test_unknown_builtin_task_and_unreadable_file(tiny_gpt2, tmp_path, fast_config, train):
    unknown = train("--config", fast_config(tiny_gpt2, {"data": {"dataset": "builtin:multiplication"}}), "--dry-run")
    assert unknown.code == 2
    assert "unknown built-in task `multiplication`; available: addition" in unknown.err

    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file")
    unreadable = train("--config", fast_config(tiny_gpt2, {"data": {"dataset": str(broken)}}), "--dry-run")
    assert unreadable.code == 2
    assert "could not read" in unreadable.err and "as parquet" in unreadable.err


def test_cuda_device_without_a_gpu_is_a_config_error(tiny_gpt2, fast_config, train):
    result = train("--config", fast_config(tiny_gpt2, {"cluster": {"device": "cuda"}}), "--dry-run")
    assert result.code == 2
    assert "cluster.device: is cuda, but no CUDA GPU is visible" in result.err
