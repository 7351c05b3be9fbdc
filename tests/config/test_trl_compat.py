"""grpolab/config/trl_compat.py: an installed TRL/transformers that lacks a field grpolab passes
is a config error before any model loads; and pyproject.toml's lowest supported versions have
every field grpolab passes.

tests/data/transformers_fields/VERSION.json are real `TrainingArguments` field lists, written in a
scratch venv with that transformers installed:
    python -c "import dataclasses, json, transformers; from transformers import TrainingArguments;
    print(json.dumps({'transformers_version': transformers.__version__, 'training_arguments':
    sorted(f.name for f in dataclasses.fields(TrainingArguments))}, indent=1))"
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from grpolab.config import GRPOConfigLoader, trl_compat
from grpolab.config.trl_snapshot import trl_fields

REPO = Path(__file__).resolve().parents[2]
FIELD_LISTS = Path(__file__).resolve().parents[1] / "data" / "transformers_fields"
SNAPSHOT = trl_fields()
ALL_FIELDS = set(SNAPSHOT["training"]) | set(SNAPSHOT["grpo"])
OLD = {"trl": SNAPSHOT["trl_version"], "transformers": "5.17.0"}


def stored_training_fields(version: str) -> set[str]:
    return set(json.loads((FIELD_LISTS / f"{version}.json").read_text())["training_arguments"])


PRESETS = ("local", "cluster", "demo")


def passed_fields(preset: str, *updates: dict) -> set[str]:
    """Every keyword argument grpolab hands GRPOConfig for a preset (and some changes)."""
    loader = GRPOConfigLoader(config_path=REPO / "configs" / f"grpo_{preset}.yaml")
    for update in updates:
        loader.update_params(update)
    return set(loader.trl_kwargs(world_size=1))


def test_the_snapshots_own_versions_import_nothing():
    def never():
        raise AssertionError("read the installed fields although the versions are the snapshot's")

    versions = {"trl": SNAPSHOT["trl_version"], "transformers": SNAPSHOT["transformers_version"]}
    assert trl_compat.field_problems(ALL_FIELDS | {"no_such_field"}, versions.get, never) == []


def test_no_trl_installed_is_not_a_version_problem():
    assert trl_compat.field_problems({"x"}, {"trl": None, "transformers": "5.0"}.get, set) == []


@pytest.mark.parametrize("section", ["training", "grpo"])
def test_every_field_the_installed_version_lacks_is_named_with_its_package_and_fix(section):
    """A generator over every field of the snapshot: remove it from the installed set, pass it."""
    package = "transformers" if section == "training" else "trl"
    for name in SNAPSHOT[section]:
        problems = trl_compat.field_problems({name, "learning_rate"}, OLD.get, lambda n=name: ALL_FIELDS - {n})
        assert [p.key for p in problems] == [name]
        text = str(problems[0])
        assert f"{package} {OLD[package]} is installed" in text and f"`{name}`" in text
        assert f"{package} {SNAPSHOT[f'{package}_version']}" in text  # the version the snapshot is from
        assert f"pip install '{package}" in problems[0].fix and "make venv" in problems[0].fix


def test_fields_grpolab_does_not_pass_are_silent():
    passed = {"learning_rate", "beta"}
    for name in sorted(ALL_FIELDS - passed):
        assert trl_compat.field_problems(passed, OLD.get, lambda n=name: ALL_FIELDS - {n}) == []


def test_transformers_5_17_is_refused_naming_activation_checkpointing():
    """The real field list of transformers 5.17: every preset passes a field it lacks."""
    old = stored_training_fields("5.17.0") | set(SNAPSHOT["grpo"])
    for mode in PRESETS:
        problems = trl_compat.field_problems(passed_fields(mode), OLD.get, lambda: old)
        assert "activation_checkpointing" in [p.key for p in problems], mode


def test_train_dry_run_on_old_transformers_exits_2_before_any_model_loads(monkeypatch, train, fast_config):
    """`grpolab train --dry-run` with transformers 5.17's fields faked in: exit 2, the field and the
    fix named, and the model never loaded (its path does not even exist)."""
    from grpolab.train import model as models

    old = stored_training_fields("5.17.0") | set(SNAPSHOT["grpo"])
    monkeypatch.setattr(trl_compat, "installed_version", OLD.get)
    monkeypatch.setattr(trl_compat, "installed_grpo_fields", lambda: old)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    monkeypatch.setattr(models, "load_tokenizer", lambda *a, **k: pytest.fail("the tokenizer loaded"))
    result = train("--config", fast_config("./no-such-model"), "--dry-run")
    assert result.code == 2, result
    assert "incompatible trl/transformers" in result.err and "activation_checkpointing" in result.err
    assert "transformers 5.17.0 is installed" in result.err and "pip install 'transformers>=5.23" in result.err


def test_config_explain_names_the_missing_field(monkeypatch, capsys):
    from grpolab.cli.main import main

    old = stored_training_fields("5.17.0") | set(SNAPSHOT["grpo"])
    monkeypatch.setattr(trl_compat, "installed_version", OLD.get)
    monkeypatch.setattr(trl_compat, "installed_grpo_fields", lambda: old)
    assert main(["config", "explain", "--mode", "cluster"]) == 2
    assert "activation_checkpointing" in capsys.readouterr().err


def _lowest(package: str) -> str:
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(rf'"{package}>=([0-9.]+)', text)
    assert match, f"pyproject.toml declares no lower bound for {package}"
    return match.group(1)


def test_lowest_supported_transformers_has_every_field_grpolab_passes():
    """pyproject.toml's lower bound is evidence, not a guess: a field list of exactly that release is
    stored, and it has every TrainingArguments field grpolab passes for every preset and for every
    typed schema field."""
    lowest = _lowest("transformers")
    version = lowest if lowest.count(".") == 2 else lowest + ".0"
    assert (FIELD_LISTS / f"{version}.json").is_file(), f"no stored field list of transformers {version}"
    have = stored_training_fields(version)
    changes = {"model.lora.enabled": True, "grpo.beta": 0.04, "training.gradient_checkpointing": True}
    for mode in PRESETS:
        training_kwargs = passed_fields(mode, changes) & set(SNAPSHOT["training"])
        assert training_kwargs <= have, (mode, sorted(training_kwargs - have))
    assert set(SNAPSHOT["training"]) == have, "the snapshot's TrainingArguments fields differ from the lowest's"


def test_the_lock_pins_the_versions_the_snapshot_was_made_from():
    lock = (REPO / "requirements.lock").read_text()
    for package in ("trl", "transformers"):
        assert re.search(rf"^{package}=={re.escape(SNAPSHOT[f'{package}_version'])}\b", lock, re.M), (
            f"requirements.lock and grpolab/config/trl_fields.json disagree on {package}: "
            "run `make upgrade` (re-locks and regenerates the snapshot)"
        )
