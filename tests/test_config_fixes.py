"""Every "Fix:" the validator prints validates (issue 21, section 3): over the whole malformed
corpus (tests/malformed), each problem whose fix gives its own key a value (`key: value`) is
fixed by that value: applied as `--set key=value`, that problem is gone. (Fixes in words, such as
"delete it", are read by people; the corpus test checks their wording.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader

CORPUS = Path(__file__).with_name("malformed")
SNIPPET = re.compile(r"`([a-z_]+(?:\.[a-z_0-9]+)+): ([^`]+)`")


def _fixes() -> list[tuple[str, str, str]]:
    """(corpus file, key, value) of every fix that sets the problem's own key."""
    found = []
    for path in sorted(CORPUS.glob("*.yaml")):
        if path.name == "expected.yaml":
            continue
        try:
            GRPOConfigLoader(config_path=path)
        except ConfigError as exc:
            for problem in exc.problems:
                match = SNIPPET.search(problem.fix or "")
                if match and match.group(1) == problem.key:
                    found.append((path.name, match.group(1), match.group(2)))
    return found


FIXES = _fixes()


def test_the_generator_finds_the_fixes():
    assert len(FIXES) >= 15, FIXES


@pytest.mark.parametrize(("name", "key", "value"), FIXES, ids=[f"{n}:{k}" for n, k, _ in FIXES])
def test_each_printed_fix_removes_its_problem(name, key, value):
    try:
        GRPOConfigLoader(config_path=CORPUS / name, overrides=[f"{key}={value}"])
    except ConfigError as exc:
        left = [str(p) for p in exc.problems if p.key == key]
        assert not left, f"{name}: the fix `{key}: {value}` still leaves: {left}"
