"""`data.datasets` (a weighted mixture of sources with the seed), `transform` (module:fn or
file.py:fn, checked on the first rows, errors naming the row) and `data.test_size` (an eval
split carved with the seed)."""

from __future__ import annotations

import json

import pytest

from grpolab.config import ConfigError
from grpolab.config.schema import DataConfig
from grpolab.train import data as datas


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def sources(tmp_path):
    math = write_jsonl(tmp_path / "math.jsonl", [{"question": f"{i}+{i}=", "answer": str(2 * i)} for i in range(40)])
    words = write_jsonl(tmp_path / "words.jsonl", [{"prompt": f"say {i}", "answer": str(i)} for i in range(10)])
    return math, words


def mixture(math, words, **extra):
    return DataConfig(
        datasets=[
            {"path": math, "weight": 0.5, "columns": {"question": "prompt"}},
            {"path": words, "weight": 2.0, "name": "echo"},
        ],
        **extra,
    )


def test_weights_pick_rows_with_the_seed(sources):
    d = mixture(*sources)
    mixed, counts = datas.load_mixture(d, seed=3)
    assert counts == {"math": {"rows": 20, "of": 40, "weight": 0.5}, "echo": {"rows": 20, "of": 10, "weight": 2.0}}
    assert len(mixed) == 40 and sorted(set(mixed["source"])) == ["echo", "math"]
    echo = [r["prompt"] for r in mixed if r["source"] == "echo"]
    assert sorted(echo) == sorted([f"say {i}" for i in range(10)] * 2)  # weight 2: every row twice
    again, _ = datas.load_mixture(d, seed=3)
    other, _ = datas.load_mixture(d, seed=4)
    assert again["prompt"] == mixed["prompt"]  # same seed, same mixture and order
    assert other["prompt"] != mixed["prompt"]


def test_a_source_without_a_column_a_reward_reads_is_named(sources, tmp_path):
    no_answer = write_jsonl(tmp_path / "bare.jsonl", [{"prompt": "x"}])
    d = DataConfig(datasets=[{"path": sources[1]}, {"path": no_answer}])
    with pytest.raises(ConfigError) as info:
        datas.load_mixture(d, seed=0, needs={"numeric_match": ["answer"]})
    message = str(info.value)
    assert "data.datasets[1].columns" in message and "source `bare` lacks" in message and "answer" in message


def test_system_prompt_per_source_makes_chat_prompts(sources):
    d = DataConfig(
        datasets=[
            {"path": sources[0], "columns": {"question": "prompt"}, "max_samples": 3},
            {"path": sources[1], "system_prompt": "Repeat the number.", "max_samples": 3},
        ]
    )
    mixed, counts = datas.load_mixture(d, seed=0)
    assert counts["math"]["of"] == 3 and len(mixed) == 6
    by_source = {r["source"]: r["prompt"] for r in mixed}
    assert by_source["words"][0] == {"role": "system", "content": "Repeat the number."}
    assert by_source["math"][-1]["role"] == "user"  # plain prompts became one user message to match


def test_transform_from_a_file_and_a_module(tmp_path, monkeypatch, sources):
    (tmp_path / "shape.py").write_text(
        "def to_prompt(row):\n    return {'prompt': 'Q: ' + row['question'], 'answer': row['answer']}\n"
    )
    d = DataConfig(dataset=sources[0], transform=f"{tmp_path}/shape.py:to_prompt", max_samples=5)
    rows = datas.load_split(d, "train", d.max_samples, seed=0).to_list()
    assert rows[0] == {"answer": "0", "prompt": "Q: 0+0="}  # the raw `question` column is gone
    monkeypatch.syspath_prepend(str(tmp_path))
    d = DataConfig(dataset=sources[0], transform="shape:to_prompt", max_samples=2)
    assert datas.load_split(d, "train", 2, seed=0)["prompt"] == ["Q: 0+0=", "Q: 1+1="]


@pytest.mark.parametrize(
    "body, expected",
    [
        ("    return {'prompt': row['nope']}", "raised KeyError: 'nope' on row 0: {'question': '0+0='"),
        ("    return 'just text'", "returned str for row 0; it must return a dict"),
        ("    return {'text': row['question']}", "returned no `prompt` for row 0 (keys: text)"),
        (
            "    if row['answer'] == '8':\n        raise ValueError('bad row')\n"
            "    return {'prompt': row['question']}",
            "raised ValueError: bad row on row 4:",
        ),
    ],
)
def test_transform_errors_name_the_row(tmp_path, sources, body, expected):
    (tmp_path / "t.py").write_text(f"def fn(row):\n{body}\n")
    d = DataConfig(dataset=sources[0], transform=f"{tmp_path}/t.py:fn")
    with pytest.raises(ConfigError) as info:
        datas.load_split(d, "train", None, seed=0)
    assert expected in str(info.value) and "data.transform" in str(info.value)


def test_test_size_carves_eval_rows_with_the_seed(sources):
    import datasets

    ds = datasets.Dataset.from_list([{"prompt": f"{i}+0=", "answer": str(i)} for i in range(50)])
    train, held = datas.carve_eval(ds, 0.2, seed=1)
    assert len(train) == 40 and len(held) == 10
    assert not set(train["prompt"]) & set(held["prompt"])
    assert datas.carve_eval(ds, 0.2, seed=1)[1]["prompt"] == held["prompt"]
    assert len(datas.carve_eval(ds, 7, seed=1)[1]) == 7
    with pytest.raises(ConfigError, match="leaves no training rows"):
        datas.carve_eval(ds, 50, seed=1)


def test_test_size_and_eval_split_exclude_each_other():
    with pytest.raises(ValueError, match="set one"):
        DataConfig(test_size=0.1, eval_split="test")
    with pytest.raises(ValueError):
        DataConfig(test_size=1.5)


def test_plan_shows_per_source_counts_and_carved_eval(tiny_gpt2, sources, fast_config, train):
    math, words = sources
    config = fast_config(
        tiny_gpt2,
        {
            "data": {
                "max_samples": None,
                "datasets": [
                    {"path": math, "weight": 0.5, "columns": {"question": "prompt"}},
                    {"path": words, "weight": 1.0},
                ],
                "test_size": 0.1,
            }
        },
    )
    result = train("--config", config, "--dry-run")
    assert result.code == 0, result
    assert "data         mixture of 2 sources (seed 42): 27 prompts" in result.out
    assert "  math         20 rows (weight 0.5 of 40)" in result.out
    assert "  words        10 rows (weight 1 of 10)" in result.out
    assert "3 prompts carved from the training data (data.test_size)" in result.out


def test_transform_that_raises_exits_2_before_anything_is_written(tiny_gpt2, sources, fast_config, train, tmp_path):
    (tmp_path / "bad.py").write_text("def fn(row):\n    raise RuntimeError('cannot parse')\n")
    config = fast_config(tiny_gpt2, {"data": {"dataset": sources[0], "transform": f"{tmp_path}/bad.py:fn"}})
    result = train("--config", config)
    assert result.code == 2, result
    assert "data.transform" in result.err and "raised RuntimeError: cannot parse on row 0" in result.err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_mixture_trains_and_rewards_see_the_source(tiny_gpt2, sources, fast_config, train, tmp_path, jsonl):
    (tmp_path / "per_source.py").write_text(
        "SEEN = []\n"
        "def by_source(completions, source, **kw):\n"
        "    SEEN.extend(source)\n"
        "    return [1.0 if s == 'echo' else 0.0 for s in source]\n"
    )
    math, words = sources
    config = fast_config(
        tiny_gpt2,
        {
            "data": {
                "datasets": [
                    {"path": math, "weight": 0.25, "columns": {"question": "prompt"}},
                    {"path": words, "name": "echo"},
                ]
            },
            "rewards": [{"name": f"{tmp_path}/per_source.py:by_source"}],
        },
    )
    result = train("--config", config)
    assert result.code == 0, result
    rows = jsonl(result.run_dir / "metrics.jsonl")
    assert any("rewards/by_source/mean" in row for row in rows)
    # Per-source means: echo rows always score 1, math rows 0.
    echo = [row["reward_by_source/echo/by_source"] for row in rows if "reward_by_source/echo/by_source" in row]
    math = [row["reward_by_source/math/by_source"] for row in rows if "reward_by_source/math/by_source" in row]
    assert echo or math, "the per-source means reach metrics.jsonl"
    assert all(v == 1.0 for v in echo) and all(v == 0.0 for v in math)
