"""config/derive.py owns the derived quantities, and the reference-model rule in particular (TRL's:
beta > 0 and no PEFT). Every place that shows or uses it (explain, the training plan, the memory
plan, the sync_ref_model rule) reads `Derived` and so agrees with TRL."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.derive import Derived, derive
from grpolab.train import report
from grpolab.tune import memory


def explain(capsys, *sets: str) -> tuple[dict[str, str], str]:
    argv = ["config", "explain"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines()[1:]:
        parts = [p.strip() for p in line.strip().split("  ") if p.strip()]
        if len(parts) >= 2:
            rows[parts[0]] = parts[1:]
    return rows, out


def test_explain_says_no_reference_model_under_lora(capsys):
    """The acceptance case: TRL disables the adapter instead of loading a second model."""
    rows, _ = explain(capsys, "model.lora.enabled=true", "grpo.beta=0.04")
    value, note = rows["reference model loaded"]
    assert value == "no" and "LoRA" in note
    assert rows["KL tracked"][0] == "yes"


def test_explain_says_a_reference_model_is_loaded_for_full_weights(capsys):
    rows, _ = explain(capsys, "grpo.beta=0.04")
    assert rows["reference model loaded"][0] == "yes"


def trl_loads_reference(beta: float, lora: bool) -> bool:
    """trl/trainer/grpo_trainer.py: ref_model is None at beta 0.0 and for a PEFT model."""
    return beta != 0.0 and not lora


@settings(max_examples=20, deadline=None)
@given(beta=st.sampled_from([0.0, 1e-4, 0.04, 0.5]), lora=st.booleans(), quantized=st.booleans())
def test_every_reader_follows_trls_rule(beta, lora, quantized):
    overrides = {"grpo.beta": beta, "model.lora.enabled": lora}
    if quantized and lora:  # QLoRA is PEFT too
        overrides["model.quantization"] = {"load_in_4bit": True}
    cfg = GRPOConfigLoader(mode="cluster", overrides=overrides).config
    expected = trl_loads_reference(beta, lora)
    d = derive(cfg, 2)
    assert d.reference_model is expected
    assert d.to_dict()["reference_model"] is expected
    assert d.kl_tracked is (beta > 0)
    shape = memory.ModelShape("llama", 32000, 256, 2, 4, 4, 512, 1024, False)
    planned = memory.plan(cfg, shape, 2, 80.0)
    assert (planned.components["reference"] > 0) is expected


def test_the_training_plan_names_the_reference_model(capsys):
    def plan_line(**overrides) -> str:
        loader = GRPOConfigLoader(mode="local", overrides=overrides)
        model = SimpleNamespace(parameters=lambda: [])
        data = SimpleNamespace(context=64, train_set=[{}] * 16, dropped=0, longest=6, eval_rows=None, sources=None)
        resolved = SimpleNamespace(summary=lambda: "cpu")
        report.print_plan(loader, "tiny", model, resolved, derive(loader.config, 1, 16), data, False)
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("steps"))

    assert "no reference model: LoRA" in plan_line(**{"model.lora.enabled": True, "grpo.beta": 0.04})
    assert "reference model loaded" in plan_line(**{"grpo.beta": 0.04})
    assert "KL off (beta 0: no reference model)" in plan_line(**{"grpo.beta": 0.0})


def test_sync_ref_model_needs_a_loaded_reference_model():
    with pytest.raises(ConfigError) as err:
        GRPOConfigLoader(
            mode="cluster", overrides={"grpo.sync_ref_model": True, "grpo.beta": 0.04, "model.lora.enabled": True}
        )
    assert "grpo.sync_ref_model" in str(err.value) and "LoRA" in str(err.value)
    GRPOConfigLoader(mode="cluster", overrides={"grpo.sync_ref_model": True, "grpo.beta": 0.04})


def test_explain_json_is_the_derived_record(capsys):
    assert main(["config", "explain", "--set", "model.lora.enabled=true", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    shown.pop("runtime")
    assert set(shown) == {k for k, v in Derived.__dataclass_fields__.items() if v.default is not None}
    assert shown["reference_model"] is False
