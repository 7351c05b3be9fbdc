"""The JSON Schema of a config (`grpolab config schema`): shipped and current, named by every
preset, and in agreement with the validator: what validates passes the schema, and every
unknown-key, wrong-type, enum and bound case of the malformed corpus fails it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.json_schema import DRAFT, schema_path, schema_text
from grpolab.config.layers import preset_dir
from grpolab.config.yaml_io import read_yaml_file, to_plain

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parents[1] / "malformed"
REGENERATE = "grpolab config schema -o grpolab/presets/grpolab.schema.json --force"
PRESETS = sorted(preset_dir().glob("grpo_*.yaml"))
# Corpus files whose mistake a JSON Schema can state: unknown keys, types, enums, bounds.
SCHEMA_CASES = [
    "13_unknown_top_level_key.yaml",
    "14_unknown_nested_key.yaml",
    "15_wrong_type_string.yaml",
    "16_out_of_bounds.yaml",
    "17_bad_loss_type.yaml",
    "18_bad_scale_rewards.yaml",
    "19_bad_lr_scheduler.yaml",
    "20_bad_vllm_mode.yaml",
    "25_grpo_field_under_training.yaml",
    "26_training_field_under_grpo.yaml",
    "27_owned_elsewhere_temperature.yaml",
    "28_owned_elsewhere_report_to.yaml",
    "29_removed_max_prompt_length.yaml",
    "30_removed_warmup_ratio.yaml",
    "31_removed_use_liger_loss.yaml",
    "32_bad_reward_name.yaml",
    "33_reward_unknown_key.yaml",
    "34_passthrough_wrong_kind.yaml",
    "35_many_problems.yaml",
    "37_section_not_mapping.yaml",
    "40_yaml11_boolean.yaml",
    "42_trl_field_at_top_level.yaml",
    "45_bad_lora_key.yaml",
    "46_bad_report_to.yaml",
    "50_union_number_out_of_range.yaml",
]


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(schema_path().read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def file_data(path) -> dict:
    tree = read_yaml_file(path)
    return to_plain(tree, str(path), tree)


def test_shipped_schema_is_current():
    assert schema_path().read_text() == schema_text(), f"the shipped schema is stale; regenerate it: {REGENERATE}"
    assert (REPO / "configs" / "grpolab.schema.json").resolve() == schema_path()
    schema = json.loads(schema_text())
    assert schema["$schema"] == DRAFT and schema["additionalProperties"] is False


def test_schema_command_prints_and_writes(tmp_path, capsys):
    assert main(["config", "schema"]) == 0
    assert capsys.readouterr().out == schema_text()
    out = tmp_path / "s.json"
    assert main(["config", "schema", "-o", str(out)]) == 0
    assert out.read_text() == schema_text()
    out.write_text("{}")
    assert main(["config", "schema", "-o", str(out)]) == 2  # never overwritten unless --force
    assert "refusing to overwrite" in capsys.readouterr().err and out.read_text() == "{}"
    assert main(["config", "schema", "-o", str(out), "--force"]) == 0 and out.read_text() == schema_text()


def value_schema(prop: dict) -> dict:
    """A value's own schema: every non-string value may also be a `${...}` reference."""
    from grpolab.config.json_schema import REFERENCE

    *options, last = prop["anyOf"]
    assert last == REFERENCE, prop
    return options[0] if len(options) == 1 else {"anyOf": options}


def test_schema_has_pass_through_trl_fields_with_their_help(validator):
    grpo = validator.schema["$defs"]["GRPOSection"]["properties"]
    assert "TRL" not in grpo["beta"].get("description", "") and value_schema(grpo["beta"])["minimum"] == 0
    assert value_schema(grpo["epsilon_high"])["type"] == ["number", "null"]
    assert "epsilon" in grpo["epsilon_high"]["description"]
    training = validator.schema["$defs"]["TrainingConfig"]["properties"]
    assert "cosine" in value_schema(training["lr_scheduler_type"])["enum"]
    assert "adamw_torch" in value_schema(training["optim"])["enum"]
    assert "temperature" not in grpo and "report_to" not in training  # set through other keys
    assert "warmup_ratio" not in training  # removed from transformers
    assert validator.schema["$defs"]["TrainingConfig"]["additionalProperties"] is False


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_presets_name_the_schema_and_pass_it(path, validator):
    first = path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=grpolab.schema.json"
    assert (path.parent / "grpolab.schema.json").is_file() and (REPO / "configs" / path.name).is_symlink()
    errors = [e.message for e in validator.iter_errors(file_data(path))]
    assert errors == []


SHIPPED = sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "configs" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_shipped_config_names_the_schema_and_passes_it(path, validator):
    """The examples and the worked-example file too, each through its own `$schema` line."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=") and first.endswith("grpolab.schema.json")
    assert (path.parent / first.split("$schema=")[1]).resolve() == schema_path()
    assert [e.message for e in validator.iter_errors(file_data(path))] == []


VALID = {
    "partial": "training:\n  learning_rate: 1.0e-5\ngrpo:\n  beta: 0.05\n",
    "pass_through": "grpo:\n  epsilon_high: 0.28\n  loss_type: dr_grpo\ntraining:\n  lr_scheduler_type: cosine\n",
    "one_tracker": "logging:\n  report_to: none\n",
    "cluster": "mode: cluster\ncluster:\n  num_processes: 4\n  backend: deepspeed\n  zero_stage: 3\n",
    "rewards": "rewards:\n  - name: format\n    weight: 0.2\n    kwargs: {pattern: x}\n  - name: my.py:fn\n",
    "base": "base: preset:grpo_cluster\ntraining:\n  learning_rate: 1.0e-4\n",
    "references": (
        "training:\n  learning_rate: ${env:GRPOLAB_TEST_UNSET_LR,2.0e-5}\n  max_steps: 10\n"
        "  save_steps: ${training.max_steps}\n  bf16: ${env:GRPOLAB_TEST_UNSET_BF16,false}\n"
    ),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_configs_pass_the_schema(name, tmp_path, validator):
    path = tmp_path / f"{name}.yaml"
    path.write_text(VALID[name])
    GRPOConfigLoader(config_path=path)  # valid for the validator ...
    assert [e.message for e in validator.iter_errors(file_data(path))] == []  # ... and for the schema


@pytest.mark.parametrize("name", SCHEMA_CASES)
def test_malformed_schema_cases_fail_the_schema(name, validator):
    with pytest.raises(ConfigError):
        GRPOConfigLoader(config_path=CORPUS / name)
    errors = list(validator.iter_errors(file_data(CORPUS / name)))
    assert errors, f"{name} passes the JSON Schema but not the validator"


def test_resolved_configs_pass_the_schema(validator):
    """Every value the loader resolves (defaults included) is one the schema allows."""
    for mode in ("local", "cluster"):
        data = GRPOConfigLoader(mode=mode).to_dict()
        assert [e.message for e in validator.iter_errors(data)] == []


def test_schema_field_descriptions_are_the_schema_descriptions(validator):
    """One source for the words: the JSON Schema's descriptions are schema.py's."""
    from grpolab.config.schema import SECTIONS

    for section, cls in SECTIONS.items():
        ref = validator.schema["properties"][section]["$ref"].rpartition("/")[2]
        props = validator.schema["$defs"][ref]["properties"]
        for name, field in cls.model_fields.items():
            if field.description:
                assert props[name]["description"] == field.description, f"{section}.{name}"


def test_schema_bounds_match_the_validator_on_the_edge():
    """A bound in the schema is the validator's bound: the edge value passes both or fails both."""
    schema = json.loads(schema_text())
    validator = Draft202012Validator(schema)
    for key, value, ok in [
        ("grpo.num_generations", 2, True),
        ("grpo.num_generations", 1, False),
        ("generation.top_p", 1.0, True),
        ("generation.top_p", 1.5, False),
        ("training.learning_rate", 0.0, False),
        ("cluster.main_process_port", 65535, True),
        ("cluster.main_process_port", 65536, False),
    ]:
        section, _, name = key.partition(".")
        data = {section: {name: value}}
        schema_ok = not list(validator.iter_errors(data))
        try:
            GRPOConfigLoader.from_dict(data)
            loader_ok = True
        except ConfigError:
            loader_ok = False
        assert schema_ok == loader_ok == ok, (key, value)


def test_reward_name_pattern_agrees_with_the_validator():
    schema = json.loads(schema_text())
    validator = Draft202012Validator(schema)
    for name, ok in [("format", True), ("pkg.mod:fn", True), ("dir/f.py:fn", True), ("numeric_mach", False)]:
        data = {"rewards": [{"name": name}]}
        assert (not list(validator.iter_errors(data))) == ok, name


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_comments_start_with_the_schema_description(path):
    """One source for the words: each preset comment is the key's description (plus the preset's
    own note); `python -m grpolab.config.describe` rewrites the presets after a description changes."""
    from grpolab.config.describe import preset_comment_problems, sync_comments

    assert [str(p) for p in preset_comment_problems(path)] == []
    assert sync_comments(path) == path.read_text(), "run `python -m grpolab.config.describe`"


def test_one_description_in_schema_explain_and_preset(capsys):
    from grpolab.config.schema import TrainingConfig

    words = TrainingConfig.model_fields["per_device_train_batch_size"].description
    schema = json.loads(schema_text())
    assert schema["$defs"]["TrainingConfig"]["properties"]["per_device_train_batch_size"]["description"] == words
    assert main(["config", "explain", "--key", "training.per_device_train_batch_size"]) == 0
    assert f"description  {words}\n" in capsys.readouterr().out
    preset = (REPO / "configs" / "grpo_cluster.yaml").read_text()
    assert f"  per_device_train_batch_size: 8  # {words}" in preset


def test_a_reference_passes_where_a_number_goes_but_a_word_does_not(validator):
    ok = {"training": {"learning_rate": "${env:LR,1.0e-5}", "max_steps": "${grpo.num_generations}"}}
    assert [e.message for e in validator.iter_errors(ok)] == []
    bad = {"training": {"learning_rate": "fast"}}
    assert list(validator.iter_errors(bad))  # a string that is not a reference is still a wrong type
    assert not list(validator.iter_errors({"cluster": {"backend": "${env:BACKEND,ddp}"}}))  # enums too
    assert list(validator.iter_errors({"cluster": {"backend": "horovod"}}))
