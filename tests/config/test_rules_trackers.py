"""A `logging.report_to` tracker whose package is not installed is a validation problem (transformers'
callback for it fails when the trainer is built), for every tracker the schema allows."""

from __future__ import annotations

import importlib.util
import re

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.rules import TRACKER_PACKAGES
from grpolab.config.schema import REPORT_TO

TRACKERS = [t for t in REPORT_TO if t not in ("none", "all")]


def _load(report_to: list[str]) -> GRPOConfigLoader:
    return GRPOConfigLoader.from_dict({"mode": "local", "logging": {"report_to": report_to}})


def test_every_tracker_has_its_packages():
    assert set(TRACKER_PACKAGES) == set(TRACKERS)


@pytest.mark.parametrize("tracker", TRACKERS)
@pytest.mark.parametrize("beside", [[], ["tensorboard"]])
def test_a_tracker_without_its_package_is_refused_with_a_fix_that_validates(tracker, beside, monkeypatch):
    missing = TRACKER_PACKAGES[tracker]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    trackers = [tracker, *(t for t in beside if t != tracker)]
    with pytest.raises(ConfigError) as info:
        _load(trackers)
    (problem,) = info.value.problems
    assert problem.key == "logging.report_to" and f"`{tracker}` logs through the {missing[0]} package" in str(problem)
    kept = re.search(r"`logging.report_to: \[(.*?)\]`", problem.fix).group(1).split(", ")
    assert tracker not in kept and "pip install" in problem.fix
    _load(kept)  # the fix validates


@pytest.mark.parametrize("tracker", TRACKERS)
def test_an_installed_tracker_validates(tracker, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    _load([tracker])
