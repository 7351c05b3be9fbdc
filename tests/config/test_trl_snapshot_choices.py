"""The TRL snapshot's allowed values and kinds drive validation (generator over every pass-through
field): a value outside a field's `choices` is refused with the key, the values and a fix that
validates; each allowed value passes the check; a plain string never passes a field TRL does
not take a string for (parallelism_config: a Python object, which no YAML value is)."""

from __future__ import annotations

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.owned import OWNED, REMOVED
from grpolab.config.schema import SECTIONS
from grpolab.config.trl_snapshot import trl_fields

FIELDS = [
    (section, name, spec)
    for section in ("training", "grpo")
    for name, spec in trl_fields()[section].items()
    if name not in OWNED and name not in REMOVED
]
WITH_CHOICES = [f for f in FIELDS if f[2].get("choices")]
NOT_STRINGS = [f for f in FIELDS if "str" not in f[2]["kinds"] and "any" not in f[2]["kinds"]]
BASE = {"mode": "local", "logging": {"report_to": ["none"]}}


def _problems(section: str, name: str, value) -> list:
    try:
        GRPOConfigLoader.from_dict({**BASE, section: {name: value}})
    except ConfigError as exc:
        return [p for p in exc.problems if p.key == f"{section}.{name}"]
    return []


def _value(spec: dict, word: str):
    return word if "str" in spec["kinds"] else [word]  # a list-only field takes its choices as items


def test_the_generator_sees_the_fields():
    names = {n for _, n, _ in WITH_CHOICES}
    assert {"log_level", "multi_objective_aggregation", "torch_compile_mode", "cache_implementation"} <= names
    assert {"dataloader_multiprocessing_context", "train_sampling_strategy", "loss_type"} <= names
    assert "parallelism_config" in {n for _, n, _ in NOT_STRINGS}
    assert "per_device_eval_batch_size" in {n for _, n, _ in BATCH_SIZES}


@pytest.mark.parametrize(("section", "name", "spec"), WITH_CHOICES, ids=[f"{s}.{n}" for s, n, _ in WITH_CHOICES])
def test_a_value_outside_the_choices_is_refused_with_a_fix_that_validates(section, name, spec, tmp_path):
    from test_rules_fixes import apply_edit, fix_edit, validates_and_loads

    problems = _problems(section, name, _value(spec, "abc"))
    assert len(problems) == 1, f"{section}.{name}: `abc` passed"
    problem = problems[0]
    assert all(f"'{choice}'" in problem.message or choice in problem.message for choice in spec["choices"])
    edit = fix_edit(problem)
    assert edit, f"{section}.{name}: the fix is not an edit: {problem.fix}"
    data = {**BASE, section: {name: _value(spec, "abc")}}
    apply_edit(data, edit)
    validates_and_loads(data, tmp_path / "config.yaml")


@pytest.mark.parametrize(("section", "name", "spec"), WITH_CHOICES, ids=[f"{s}.{n}" for s, n, _ in WITH_CHOICES])
def test_every_allowed_value_and_the_default_pass_the_choice_check(section, name, spec):
    for value in [*(_value(spec, c) for c in spec["choices"]), spec["default"]]:
        # Other rules may still refuse a value (save_strategy best needs TRL's evaluation); the choice check does not.
        left = [p for p in _problems(section, name, value) if p.message.startswith("Input should be")]
        assert not left, f"{section}.{name}: {value!r} refused: {left}"


@pytest.mark.parametrize(("section", "name", "spec"), NOT_STRINGS, ids=[f"{s}.{n}" for s, n, _ in NOT_STRINGS])
def test_a_plain_string_is_refused_where_trl_takes_none(section, name, spec):
    assert _problems(section, name, "abc"), f"{section}.{name} ({spec['kinds']}) took the string `abc`"


def test_a_space_separated_debug_string_is_each_word_checked():
    assert not _problems("training", "debug", "underflow_overflow tpu_metrics_debug")
    assert _problems("training", "debug", "underflow_overflow abc")


# Pass-through batch sizes (grpolab's own, such as generation_batch_size, are typed with ge=1 in the schema).
BATCH_SIZES = [
    (s, n, spec)
    for s, n, spec in FIELDS
    if n.endswith("_batch_size") and "int" in spec["kinds"] and n not in SECTIONS[s].model_fields
]


@pytest.mark.parametrize(("section", "name", "spec"), BATCH_SIZES, ids=[f"{s}.{n}" for s, n, _ in BATCH_SIZES])
def test_every_batch_size_below_one_is_refused_with_a_fix_that_validates(section, name, spec, tmp_path):
    from test_rules_fixes import apply_edit, fix_edit, validates_and_loads

    for value in (-1, 0):
        problems = _problems(section, name, value)
        assert problems, f"{section}.{name}: {value} passed"
        data = {**BASE, section: {name: value}}
        apply_edit(data, fix_edit(problems[0]))
        validates_and_loads(data, tmp_path / "config.yaml")
