"""What validates reaches its first optimizer step (issue 21, section 3).

- The property test draws values for the numeric, enum and boolean keys of the config (every such
  key of the JSON schema, TRL's pass-through fields included) and, for each config that `validate`
  and this machine's runtime decisions accept, trains one optimizer step on a tiny local model
  through grpolab's own pipeline: whatever GRPOTrainer, Trainer, the tokenizer, the collator or
  accelerate would refuse must have been a validation problem.
- The spec's example experiments and Method 1's edit, saved verbatim as partial files, validate and
  train in local and cluster mode; a preset's pinned generation_batch_size follows the batch keys
  they set, and the output says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
from pathlib import Path

import pytest
from conftest import fast_settings
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.derive import derive

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "grpolab/presets/grpolab.schema.json").read_text())


# ----------------------------------------------------------------------------- values from the schema
def _leaves(node, path=()):
    """(dotted key, schema node) of every leaf key of the schema."""
    if "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if node.get("type") == "object" and "properties" in node:
        for name, child in node["properties"].items():
            yield from _leaves(child, (*path, name))
    elif path:
        yield ".".join(path), node


def _branches(node) -> list[dict]:
    """The typed alternatives of a key (a `${...}` reference is not a value to draw)."""
    out = []
    for branch in node.get("anyOf", [node]):
        if "anyOf" in branch:
            out += _branches(branch)
        elif "pattern" not in branch or "enum" in branch:
            out.append(branch)
    return out


def _values(branch: dict) -> st.SearchStrategy | None:
    """Values of one alternative, near its bounds (where validation and the libraries disagree)."""
    kinds = branch.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "enum" in branch or "const" in branch:
        return st.sampled_from(branch.get("enum") or [branch["const"]])
    low = branch.get("minimum", branch.get("exclusiveMinimum", branch.get("gt", branch.get("ge"))))
    high = branch.get("maximum", branch.get("exclusiveMaximum"))
    found = []
    if "integer" in kinds:
        lo = -2 if low is None else math.ceil(low) + ("exclusiveMinimum" in branch or "gt" in branch)
        found.append(st.integers(lo, lo + 4 if high is None else min(high, lo + 4)))
    if "number" in kinds:
        lo = -1.0 if low is None else float(low)
        hi = lo + 4.0 if high is None else float(high)
        found.append(st.sampled_from(sorted({lo, (lo + hi) / 2, hi, lo + 0.5, 0.0, 1.0} & _closed(branch, lo, hi))))
    if "boolean" in kinds:
        found.append(st.booleans())
    if "null" in kinds:
        found.append(st.none())
    return st.one_of(found) if found else None


def _closed(branch, lo, hi) -> set:
    """The candidate floats the branch's bounds allow."""
    ok = set()
    for v in {lo, (lo + hi) / 2, hi, lo + 0.5, 0.0, 1.0}:
        if v < lo or v > hi:
            continue
        if v == lo and ("exclusiveMinimum" in branch or "gt" in branch):
            continue
        if v == hi and "exclusiveMaximum" in branch:
            continue
        ok.add(v)
    return ok or {lo}


# Keys the property test does not draw: the run's length (one step is what it trains);
# torch_compile, which is valid and compiles for minutes on a CPU; router_aux_loss_coef (refused
# for a model that is not a Mixture-of-Experts) and cast_lm_head_to_fp32 (refused for a tied LM
# head, as the tiny GPT-2 has): only the model's config.json says which, so train/model.py checks
# them before the model loads (tests/train/test_model_options.py).
MODEL_STAGE = {"grpo.router_aux_loss_coef", "grpo.cast_lm_head_to_fp32"}
FIXED = {"training.max_steps", "mode", "training.torch_compile", *MODEL_STAGE}


def drawable() -> dict[str, st.SearchStrategy]:
    keys = {}
    for key, node in _leaves(SCHEMA):
        if key in FIXED:
            continue
        strategies = [s for s in map(_values, _branches(node)) if s is not None]
        # A key whose only values are strings (paths, names) or mappings is not numeric/enum/bool.
        if strategies and any(
            ("enum" in b or b.get("type") not in ("string", "object", "array")) for b in _branches(node)
        ):
            keys[key] = st.one_of(strategies)
    return keys


KEYS = drawable()


def test_the_schema_gives_every_kind_of_key():
    for key in ("training.seed", "training.learning_rate", "grpo.loss_type", "training.bf16", "cluster.backend"):
        assert key in KEYS, key
    assert len(KEYS) > 150, len(KEYS)  # TRL's pass-through fields are drawn too


def _set(data: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def _one_step(config: Path, out: Path) -> tuple[int, str]:
    """grpolab's own training pipeline, in this process: (exit code, console)."""
    from grpolab.train.pipeline import run_from_args
    from grpolab.train.request import TrainRequest

    parser = argparse.ArgumentParser()
    TrainRequest.add_arguments(parser)
    args = parser.parse_args(["--config", str(config), "--output-dir", str(out)])
    buffer = io.StringIO()
    saved = dict(os.environ)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            code = run_from_args(args)
    except BaseException as exc:  # noqa: BLE001 - a traceback is the finding, reported with the draw
        code = f"{type(exc).__name__}: {exc}"
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return code, buffer.getvalue()


def _accepted(path: Path) -> bool:
    """`config validate`, and this machine's runtime decisions, accept the file."""
    from grpolab.runtime.hardware import probe
    from grpolab.runtime.resolve import resolve

    try:
        loader = GRPOConfigLoader(config_path=path)
    except ConfigError:
        return False
    return not resolve(loader.config, probe(use_torch=False)).problems


EXAMPLES = int(os.environ.get("GRPOLAB_FIRST_STEP_EXAMPLES", "10"))


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each try trains; the draw is printed as drawn
)
@given(
    drawn=st.dictionaries(st.sampled_from(sorted(KEYS)), st.none(), min_size=1, max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: KEYS[k] for k in keys})
    )
)
def test_what_validates_reaches_its_first_optimizer_step(drawn, tiny_gpt2, tmp_path_factory):
    folder = tmp_path_factory.mktemp("step")
    data = fast_settings(tiny_gpt2, folder / "runs", {"training": {"max_steps": 1}})
    for key, value in drawn.items():
        _set(data, key, value)
    path = folder / "drawn.yaml"
    path.write_text(json.dumps(data))
    if not _accepted(path):
        return
    code, console = _one_step(path, folder / "runs")
    assert code == 0, f"validated, but training stopped ({code}) for {drawn}:\n{console[-3000:]}"


# ----------------------------------------------------------------------------- the spec's experiments
# Saved verbatim from the spec ("Example Experiments" and Method 1's edit), comments included.
SPEC_EDITS = {
    "experiment1_conservative": (
        "training:\n  learning_rate: 1.0e-5  # Low LR\ngrpo:\n  beta: 0.05  # High KL penalty\n"
    ),
    "experiment2_aggressive": (
        "training:\n  learning_rate: 1.0e-4  # High LR\ngrpo:\n  beta: 0.005  # Low KL penalty\n"
    ),
    "experiment3_large_batch": (
        "training:\n  per_device_train_batch_size: 16\n  gradient_accumulation_steps: 4\n"
        "  # Effective batch size: 64\n"
    ),
    "method1_edit": (
        "training:\n  learning_rate: 1.0e-4  # Changed from 3.0e-5\n"
        "  per_device_train_batch_size: 16  # Changed from 8\n\ngrpo:\n  beta: 0.05  # Changed from 0.01\n"
    ),
}
MODES = ("local", "cluster")


def _batch_keys_set(text: str) -> list[str]:
    data = YAML(typ="safe").load(text)
    return [
        f"training.{k}"
        for k in data.get("training", {})
        if k in ("per_device_train_batch_size", "gradient_accumulation_steps")
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(SPEC_EDITS))
def test_the_spec_experiments_validate_with_the_round_following(name, mode, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC_EDITS[name])
    loader = GRPOConfigLoader(mode=mode, config_path=path)
    cfg = loader.config
    d = derive(cfg, loader.target_world_size())
    t = cfg.training
    assert d.effective_batch_size == t.per_device_train_batch_size * t.gradient_accumulation_steps
    notes = [str(w) for w in loader.warnings if w.key == "grpo.generation_batch_size"]
    if mode == "local" and _batch_keys_set(SPEC_EDITS[name]):
        # The local preset pins 8 for one completion per micro-step; the user's batch replaces that.
        assert d.generation_batch_size == t.per_device_train_batch_size * t.gradient_accumulation_steps
        assert notes and "was 8 in preset grpo_local.yaml" in notes[0], loader.warnings
        assert loader.origin_of("grpo.generation_batch_size").startswith(
            "follows training.per_device_train_batch_size"
        )
    else:
        assert not notes, notes


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(SPEC_EDITS))
def test_the_spec_experiments_train(name, mode, tiny_gpt2, tmp_path, train):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC_EDITS[name])
    fast = ["data.max_samples=16", "generation.max_completion_length=4", "logging.report_to=[none]"]
    fast += ["training.max_steps=2", "training.gradient_checkpointing=false", "cluster.device=cpu"]
    args = ["--mode", mode, "--config", path, "--model", tiny_gpt2, "--output-dir", tmp_path / "runs"]
    result = train(*args, *(a for s in fast for a in ("--set", s)))
    assert result.code == 0, result
    assert "Traceback" not in result.err
    if mode == "local" and _batch_keys_set(SPEC_EDITS[name]):
        assert "grpo.generation_batch_size: follows training.per_device_train_batch_size" in result.err
        assert "(was 8 in preset grpo_local.yaml:" in result.err


# ----------------------------------------------------------------------------- every batch key, both modes
# The keys a user sets to size a run; each over values that split a group of 8 and that do not.
BATCH_VALUES = {
    "training.per_device_train_batch_size": [1, 2, 3, 4, 5, 6, 8, 12, 16, 32, 64],
    "training.gradient_accumulation_steps": [1, 2, 3, 4, 5, 8, 16],
    "grpo.steps_per_generation": [1, 2, 3, 4, 8, 16],
    "grpo.num_generations": [2, 3, 4, 6, 8, 12, 16],
    "cluster.num_processes": [1, 2, 3, 4, 8],
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", sorted(BATCH_VALUES))
def test_a_batch_edit_never_trips_on_the_presets_round(key, mode, tmp_path):
    """Whatever batch key a partial file sets, to whatever value, in either mode: the preset's
    pinned generation_batch_size never blocks it (it follows), and a problem that remains names
    a key with a fix that validates."""
    for value in BATCH_VALUES[key]:
        section, field = key.split(".")
        path = tmp_path / "edit.yaml"
        path.write_text(f"{section}:\n  {field}: {value}\n")
        try:
            loader = GRPOConfigLoader(mode=mode, config_path=path)
        except ConfigError as exc:
            preset = [str(p) for p in exc.problems if p.key == "grpo.generation_batch_size"]
            assert not preset, f"{key}: {value} ({mode}): {preset}"
            for problem in exc.problems:
                fix = re.search(r"`([a-z_]+\.[a-z_]+): (\d+)`", problem.fix or "")
                assert fix, f"{key}: {value} ({mode}): no fix to apply in {problem}"
                GRPOConfigLoader(mode=mode, config_path=path, overrides=[f"{fix[1]}={fix[2]}"])
            continue
        B = derive(loader.config, loader.target_world_size()).generation_batch_size
        assert B % loader.config.grpo.num_generations == 0, (key, value, mode, B)
        follows = loader.origin_of("grpo.generation_batch_size").startswith("follows ")
        # The local preset pins its round (the cluster preset's is `auto`): it follows a key that
        # sizes the round, and a group size that no longer divides it.
        pinned = mode == "local" and (key != "grpo.num_generations" or 8 % value)
        assert follows == bool(pinned), (key, value, mode, loader.origin_of("grpo.generation_batch_size"))
