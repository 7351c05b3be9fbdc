"""Data files: emptiness and column types are checked at load, naming the file, the line or row
and the column (issue 21, section 3). An empty JSONL said `StopIteration`."""

from __future__ import annotations

import json

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.train import data as datas

GOOD = {"prompt": "2+2=", "answer": "4"}


def _load(path):
    cfg = GRPOConfigLoader(data={"mode": "local", "data": {"dataset": str(path)}}).config
    dataset = datas.load_split(cfg.data, cfg.data.split, None, 0)
    datas.check_columns(dataset, {}, f"`{path}`")
    return dataset


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.json", "empty.csv", "blank.jsonl"])
def test_an_empty_data_file_is_named_not_a_stop_iteration(name, tmp_path):
    path = tmp_path / name
    path.write_text("" if name.startswith("empty") else "\n  \n\n")
    with pytest.raises(ConfigError) as info:
        _load(path)
    text = str(info.value)
    assert f"data file `{path}` is empty (no rows)" in text and "StopIteration" not in text


# Each kind of bad JSONL line, at each position of a three-row file: the file and line are named.
BAD_LINES = {"not JSON": '{"prompt": "1+1=", ', "a list": '["1+1=", "2"]', "a string": '"1+1="', "a number": "7"}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_jsonl_line_that_is_not_an_object_is_named_by_line(kind, position, tmp_path):
    lines = [json.dumps(GOOD)] * 3
    lines[position] = BAD_LINES[kind]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        _load(path)
    assert f"`{path}` line {position + 1} " in str(info.value) and f"{path}:{position + 1}" in str(info.value)


# Each kind of prompt that is neither text nor chat messages, at each row: row and column named.
BAD_PROMPTS = {"a number": 5, "null": None, "an object": {"text": "1+1="}, "a list of numbers": [1, 2]}


@pytest.mark.parametrize("kind", sorted(BAD_PROMPTS))
@pytest.mark.parametrize("position", [0, 2])
def test_a_prompt_of_the_wrong_type_names_row_and_column(kind, position, tmp_path):
    rows = [dict(GOOD) for _ in range(3)]
    rows[position]["prompt"] = BAD_PROMPTS[kind]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        _load(path)
    except ConfigError as exc:
        text = str(exc)
        assert f"`{path}`, row {position + 1}, column `prompt`" in text or "could not read" in text, text
        assert str(path) in text
    else:
        pytest.fail(f"a prompt that is {kind} loaded")


def test_good_rows_load(tmp_path):
    path = tmp_path / "rows.jsonl"
    chat = {"prompt": [{"role": "user", "content": "2+2="}], "answer": "4"}
    path.write_text(json.dumps(GOOD) + "\n")
    assert len(_load(path)) == 1
    path.write_text(json.dumps(chat) + "\n")
    assert len(_load(path)) == 1


@pytest.mark.parametrize("contents", [[], ["notes.md"], ["sub/"]], ids=["empty", "no data files", "only a folder"])
def test_a_folder_that_is_no_dataset_is_not_called_a_hub_dataset(contents, tmp_path):
    folder = tmp_path / "mydata"
    folder.mkdir()
    for name in contents:
        if name.endswith("/"):
            (folder / name).mkdir()
        else:
            (folder / name).write_text("# notes\n")
    try:
        _load(folder)
    except ConfigError as exc:
        text = str(exc)
        assert "Hub dataset `" not in text and "the local folder" in text and str(folder) in text, text
    else:
        pytest.fail("a folder without data files loaded")
