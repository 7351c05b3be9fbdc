"""`config explain --key SECTION` lists the section's keys by their full dotted paths, nested ones
included (issue 21 probe: `--key guard` listed `min_points` without `thresholds.`), for every
section the schema has."""

from __future__ import annotations

import pytest

from grpolab.config import ConfigError
from grpolab.config.describe import all_keys, key_info

KEYS = [key for key, _ in all_keys()]
# Every key that holds other keys: each prefix of a known key.
SECTIONS = sorted({key.rsplit(".", n)[0] for key in KEYS for n in range(1, key.count(".") + 1)} - {""})
SECTIONS = [section for section in SECTIONS if not section.endswith("[]")]  # a list item: no key of its own


def test_there_are_nested_sections():
    assert "guard.thresholds" in SECTIONS and "model.lora" in SECTIONS


@pytest.mark.parametrize("section", SECTIONS)
def test_a_section_lists_every_key_inside_it_by_its_full_path(section):
    with pytest.raises(ConfigError) as info:
        key_info(section)
    message = str(info.value)
    assert "is a section" in message
    listed = message.partition("its keys: ")[2].rstrip(".").split(", ")
    inside = [key for key in KEYS if key.startswith(section + ".")]
    if len(message) < 3500:  # a long list is cut in the middle, with its length said
        assert listed == inside
    else:
        assert all(key.startswith(section + ".") for key in listed[:5])
