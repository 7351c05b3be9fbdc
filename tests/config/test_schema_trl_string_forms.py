"""String forms TRL's constructor parses (its CLI passes every value as text): validation agrees
with `GRPOConfig(...)` on them. Generators: every field TRL reads a JSON object from (the snapshot's
`json` mark, from `_VALID_DICT_FIELDS`), and any text for `grpo.pad_to_multiple_of`, which
GRPOConfig turns into an int or None."""

from __future__ import annotations

import json
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.owned import OWNED, REMOVED
from grpolab.config.trl_snapshot import trl_fields

BASE = {"mode": "local", "logging": {"report_to": ["none"]}}
JSON_FIELDS = [
    (section, name)
    for section in ("training", "grpo")
    for name, spec in trl_fields()[section].items()
    if spec.get("json") and name not in OWNED and name not in REMOVED
]


def _refusal(section: str, name: str, value) -> str | None:
    try:
        GRPOConfigLoader.from_dict({**BASE, section: {name: value}})
    except ConfigError as exc:
        mine = [p for p in exc.problems if p.key == f"{section}.{name}"]
        assert mine, f"{section}.{name}={value!r} refused for another key: {exc}"
        return str(mine[0])
    return None


def _trl_value(name: str, value):
    """GRPOConfig's own reading of `value`, or the exception it raised."""
    from trl import GRPOConfig

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(GRPOConfig(output_dir="unused", use_cpu=True, report_to="none", **{name: value}), name)
    except Exception as exc:  # noqa: BLE001 - any refusal counts
        return exc


def test_the_snapshot_marks_the_json_fields():
    names = {name for _, name in JSON_FIELDS}
    assert {"lr_scheduler_kwargs", "generation_kwargs", "chat_template_kwargs", "fsdp_config"} <= names


@pytest.mark.parametrize(("section", "name"), JSON_FIELDS)
def test_a_json_object_string_validates_and_a_broken_one_is_refused_as_trl_refuses_it(section, name):
    fine = json.dumps({"a": 1})
    assert _refusal(section, name, fine) is None
    for broken in ("{a: 1}", '{"a": 1', '{"a": 1' + "0" * 5000 + "}"):
        message = _refusal(section, name, broken)
        assert message is not None, f"{section}.{name}={broken[:20]!r} validated, and TRL's constructor refuses it"
        assert "read as JSON" in message and f"delete `{section}.{name}`" in message
        # the fix (deleting the key) validates
        assert _refusal(section, name, {}) is None


@pytest.mark.parametrize(("section", "name"), [("training", "lr_scheduler_kwargs"), ("grpo", "generation_kwargs")])
def test_trl_refuses_what_validation_refuses(section, name):
    assert isinstance(_trl_value(name, "{a: 1}"), ValueError)
    assert _trl_value(name, '{"a": 1}') == {"a": 1}


PAD_TEXT = st.one_of(
    st.sampled_from(["none", "None", "NULL", "null", "auto", "16", " 8 ", "1_6", "0", "-3", "+4", "eight", "", "8.0"]),
    st.text(alphabet="0123456789 -+_nulNoeautx.", max_size=6),
)


@settings(max_examples=60, deadline=None)
@given(text=PAD_TEXT)
def test_pad_to_multiple_of_text_is_read_as_grpo_config_reads_it(text):
    trl = _trl_value("pad_to_multiple_of", text)
    refused = _refusal("grpo", "pad_to_multiple_of", text)
    usable = not isinstance(trl, Exception) and (trl is None or trl == "auto" or trl >= 1)
    if not usable:  # TRL refuses it, or pads to a multiple of 0 or less (its pad() divides by it)
        assert refused is not None and "Fix: set `grpo.pad_to_multiple_of: " in refused
        return
    assert refused is None, f"{text!r}: GRPOConfig reads it as {trl!r}, validation refused it: {refused}"
    loader = GRPOConfigLoader.from_dict({**BASE, "grpo": {"pad_to_multiple_of": text}})
    # the resolved config shows what TRL will use (auto: decided per device, as TRL does)
    assert loader.config.grpo.pad_to_multiple_of == ("auto" if text == "auto" else trl)


def test_an_empty_completions_repo_needs_log_completions_as_trl_says():
    assert isinstance(_trl_value("log_completions_hub_repo", ""), ValueError)
    assert "needs grpo.log_completions: true" in _refusal("grpo", "log_completions_hub_repo", "")
