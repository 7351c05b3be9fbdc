"""The origin of a value is the file that set it (issue 21 probe: a mapping in the user's file that
replaces a preset's list was blamed on the preset's line). A generator over every list-valued key
of every mode preset: replaced by a mapping in the user's file, the error names that file."""

from __future__ import annotations

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.keys import flatten
from grpolab.config.layers import MODES, load_preset


def _list_keys():
    for mode in MODES:
        for key, value in flatten(load_preset(mode).data, split_lists=False).items():
            if isinstance(value, list):
                yield mode, key


LIST_KEYS = sorted(set(_list_keys()))


def test_the_presets_have_list_keys():
    assert ("local", "rewards") in LIST_KEYS


@pytest.mark.parametrize(("mode", "key"), LIST_KEYS)
def test_a_mapping_replacing_a_preset_list_is_blamed_on_the_users_file(tmp_path, mode, key):
    parts = key.split(".")
    text = f"mode: {mode}\n"
    for depth, part in enumerate(parts):
        text += "  " * depth + f"{part}:\n"
    text += "  " * len(parts) + "bogus: 1\n"
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(config_path=path)
    problem = next(p for p in info.value.problems if p.key == key)
    assert problem.origin == f"{path}:{len(parts) + 1}", problem
    assert "preset" not in str(problem)
