"""The TRL field snapshot (grpolab/config/trl_fields.json) has the field names, kinds and choices
of the installed trl/transformers, and what the config system hands to trl.GRPOConfig is accepted
by it. Versions are not compared: a release that changes no field is no drift (help texts and
defaults may differ). Imports trl (a few seconds)."""

from __future__ import annotations

import json

import pytest

trl = pytest.importorskip("trl")

from grpolab.config import GRPOConfigLoader  # noqa: E402
from grpolab.config.derive import derive  # noqa: E402
from grpolab.config.owned import OWNED, REMOVED  # noqa: E402
from grpolab.config.schema import SECTIONS  # noqa: E402
from grpolab.config.trl_snapshot import SNAPSHOT_PATH, build_snapshot  # noqa: E402

REGENERATE = (
    "the TRL field snapshot is out of date: run `python -m "
    "grpolab.config.trl_snapshot` and review the diff of grpolab/config/trl_fields.json"
)


@pytest.fixture(scope="module")
def live():
    return json.loads(json.dumps(build_snapshot()))  # as it would be written to the file


@pytest.fixture(scope="module")
def stored():
    return json.loads(SNAPSHOT_PATH.read_text())


@pytest.mark.parametrize("section", ["training", "grpo"])
def test_field_names_match(live, stored, section):
    missing = sorted(set(live[section]) - set(stored[section]))
    extra = sorted(set(stored[section]) - set(live[section]))
    assert not missing and not extra, f"{REGENERATE}\n  new in trl: {missing}\n  gone from trl: {extra}"


@pytest.mark.parametrize("section", ["training", "grpo"])
def test_kinds_and_choices_match(live, stored, section):
    changed = {
        name: (stored[section][name], spec)
        for name, spec in live[section].items()
        if name in stored[section]
        and (spec["kinds"], spec.get("choices"))
        != (stored[section][name]["kinds"], stored[section][name].get("choices"))
    }
    assert not changed, f"{REGENERATE}\n  changed (stored, live): {changed}"


def test_snapshot_kinds_are_known(stored):
    allowed = {"bool", "int", "float", "str", "dict", "list", "null", "any", "python"}
    for section in ("training", "grpo"):
        for name, spec in stored[section].items():
            assert spec["kinds"] and set(spec["kinds"]) <= allowed, name


@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_trl_accepts_trl_kwargs_and_resolves_like_grpolab(mode, tmp_path):
    loader = GRPOConfigLoader(mode=mode)
    kwargs = loader.trl_kwargs(world_size=1)
    kwargs.update(output_dir=str(tmp_path), report_to="none")
    config = trl.GRPOConfig(**kwargs)
    derived = derive(loader.config, 1)
    assert config.generation_batch_size == derived.generation_batch_size
    assert config.steps_per_generation == derived.steps_per_generation
    assert config.num_generations == loader.config.grpo.num_generations
    assert config.learning_rate == loader.config.training.learning_rate
    assert config.beta == loader.config.grpo.beta
    assert config.max_completion_length == loader.config.generation.max_completion_length


def test_trl_accepts_every_pass_through_field(stored, tmp_path):
    updates = {
        f"{section}.{name}": spec["default"]
        for section in ("training", "grpo")
        for name, spec in stored[section].items()
        if name not in OWNED and name not in REMOVED and name not in SECTIONS[section].model_fields
    }
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_params(updates)
    kwargs = loader.trl_kwargs(world_size=1)
    kwargs["output_dir"] = str(tmp_path)
    config = trl.GRPOConfig(**kwargs)
    assert config.generation_batch_size == 8
