"""One table per concept: the GRPOConfig field a key becomes is written on its schema field
(schema.trl_names), and the mapping (runtime/trl_args.py), the owned fields (owned.OWNED) and
`config explain --key` (describe.trl_field) all derive from it. Generators over every named key."""

from __future__ import annotations

import dataclasses

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.describe import trl_field
from grpolab.config.keys import lookup
from grpolab.config.owned import OWNED
from grpolab.config.schema import trl_names
from grpolab.config.trl_snapshot import trl_fields
from grpolab.runtime.hardware import HardwareFacts
from grpolab.runtime.resolve import resolve
from grpolab.runtime.trl_args import to_trl_kwargs

NAMES = sorted(trl_names().items())
# Decided by the runtime for the machine (Resolved), not copied from the key.
DECIDED = {"bf16", "use_liger_kernel", "use_vllm"}


def test_the_rename_and_the_sections_are_there():
    names = trl_names()
    assert names["training.gradient_checkpointing"] == "activation_checkpointing"
    assert names["generation.top_p"] == "top_p" and names["rewards[].weight"] == "reward_weights"


@pytest.mark.parametrize(("key", "trl"), NAMES)
def test_every_trl_name_is_a_field_of_the_snapshot(key, trl):
    fields = trl_fields()
    assert trl in fields["training"] or trl in fields["grpo"], f"{key} -> {trl}: not a GRPOConfig field"


def _kwargs(overrides):
    loader = GRPOConfigLoader(mode="cluster", overrides=overrides)
    resolved = resolve(loader.config, HardwareFacts(cores=4))
    resolved = dataclasses.replace(resolved, use_vllm=True)  # as on a machine with vLLM
    return loader.config, to_trl_kwargs(loader.config, resolved)


@pytest.mark.parametrize(("key", "trl"), NAMES)
def test_every_named_key_is_mapped_to_its_field(key, trl):
    config, kwargs = _kwargs(
        ["cluster.vllm_mode=server", "grpo.generation_batch_size=64", "logging.report_to=[wandb]"]
    )
    if key == "grpo.steps_per_generation":  # exclusive with generation_batch_size
        config, kwargs = _kwargs(["grpo.steps_per_generation=2"])
    assert trl in kwargs, f"{key} -> {trl} is not passed"
    value = config.model_dump()
    if trl == "reward_weights":
        assert kwargs[trl] == [reward.weight for reward in config.rewards]
    elif trl not in DECIDED:
        assert kwargs[trl] == lookup(value, key), key


@pytest.mark.parametrize(("key", "trl"), NAMES)
def test_explain_and_owned_derive_from_the_same_name(key, trl):
    assert trl_field(key.replace("[]", "[0]")) == trl
    if key not in (f"training.{trl}", f"grpo.{trl}"):
        assert trl in OWNED  # set by its own key: as a pass-through it would be set twice
        section = "grpo" if trl in trl_fields()["grpo"] else "training"
        with pytest.raises(ConfigError) as info:
            GRPOConfigLoader.from_dict({section: {trl: lookup(GRPOConfigLoader().to_dict(), key.split("[]")[0])}})
        assert OWNED[trl].via in str(info.value)
