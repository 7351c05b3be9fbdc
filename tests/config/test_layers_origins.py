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


def _ancestors(key: str):
    """`rewards[0].weight` -> `rewards[0]`, `rewards`."""
    from grpolab.config.keys import parent_key

    while (key := parent_key(key)) != "":
        yield key


def _leaves_below_lists():
    for mode in MODES:
        for key in flatten(load_preset(mode).data):
            if "[" in key:
                yield mode, key


@pytest.mark.parametrize(("mode", "key"), sorted(set(_leaves_below_lists())))
def test_a_part_changed_on_the_command_line_is_what_its_list_is_blamed_on(mode, key):
    """`--set rewards[0].weight=0` makes the rewards invalid: the error about `rewards` (and about
    `rewards[0]`) names that --set, not the preset's line the list started on."""
    loader = GRPOConfigLoader(mode=mode)
    value = loader.get_param(key)
    changed = GRPOConfigLoader(mode=mode, overrides={key: value})
    for above in _ancestors(key):
        if "[" in above or isinstance(loader.get_param(above), list):
            assert changed.origin_of(above) == f"--set {key}", above
            assert loader.origin_of(above).startswith("preset ")  # unchanged: still the preset's


def test_the_presets_have_keys_below_lists():
    assert ("local", "rewards[0].weight") in set(_leaves_below_lists())
