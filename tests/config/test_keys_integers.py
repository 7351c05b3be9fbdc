"""What validates reaches its first optimizer step: whole numbers (issue 21, section 3).

`training.seed: -1` validated and then died in numpy's set_seed after the model loaded. Every
whole-number key, grpolab's own and TRL's pass-through fields alike, is now checked against what
the libraries below hold: seeds 0..2**32-1 (numpy), every count within 64 bits (torch). The
generator walks every such key; each refusal names the key, and the seed fix it prints validates."""

from __future__ import annotations

import json
import re

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.keys import flatten
from grpolab.config.rules import INT64_MAX, SEED_MAX
from grpolab.config.trl_snapshot import SNAPSHOT_PATH


def _int_keys() -> list[str]:
    """Every whole-number key of a default config (both modes), and TRL's int-kind pass-through fields."""
    keys = set()
    for mode in ("local", "cluster"):
        for key, value in flatten(GRPOConfigLoader(mode=mode).to_dict()).items():
            if isinstance(value, int) and not isinstance(value, bool) and "[" not in key:
                keys.add(key)
    snapshot = json.loads(SNAPSHOT_PATH.read_text())
    for section in ("training", "grpo"):
        for name, spec in snapshot[section].items():
            if "int" in spec.get("kinds", []) and "bool" not in spec.get("kinds", []):
                keys.add(f"{section}.{name}")
    return sorted(keys)


INT_KEYS = _int_keys()
SEED_KEYS = [k for k in INT_KEYS if k.rpartition(".")[2].endswith("seed")]


def _load(key, value, mode="local"):
    return GRPOConfigLoader(mode=mode, overrides=[f"{key}={value}"])


def test_the_generator_sees_the_keys_of_the_kind():
    assert {"training.seed", "training.data_seed", "training.max_steps", "grpo.num_generations"} <= set(INT_KEYS)
    assert set(SEED_KEYS) >= {"training.seed", "training.data_seed"}


@pytest.mark.parametrize("key", SEED_KEYS)
@pytest.mark.parametrize("value", [-1, -(2**31), SEED_MAX + 1, 2**64])
def test_every_seed_outside_numpys_range_is_refused_with_a_fix_that_validates(key, value):
    with pytest.raises(ConfigError) as info:
        _load(key, value)
    problem = next(p for p in info.value.problems if p.key == key)
    assert "is not a seed" in problem.message and str(SEED_MAX) in problem.fix
    fixed = re.search(r"`([\w.]+): (\d+)`", problem.fix)
    assert fixed and fixed.group(1) == key
    assert GRPOConfigLoader(overrides=[f"{key}={fixed.group(2)}"]).config is not None  # the fix validates


@pytest.mark.parametrize("key", SEED_KEYS)
@pytest.mark.parametrize("value", [0, SEED_MAX])
def test_seeds_at_the_ends_of_the_range_validate(key, value):
    assert _load(key, value).get_param(key) == value


@pytest.mark.parametrize("key", INT_KEYS)
def test_no_whole_number_past_64_bits_validates(key):
    mode = "cluster" if key.startswith("cluster.") else "local"
    for value in (INT64_MAX + 1, -(2**64)):
        try:
            _load(key, value, mode)
        except ConfigError as exc:
            assert any(p.key == key or key in str(p) for p in exc.problems), str(exc)
        else:
            pytest.fail(f"{key}={value} validated")
