"""Every "Fix:" the validator prints validates (issue 21, section 3): over the whole malformed
corpus (tests/malformed), each problem whose fix gives its own key a value (`key: value`) is
fixed by that value: applied as `--set key=value`, that problem is gone. (Fixes in words, such as
"delete it", are read by people; the corpus test checks their wording.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.keys import split_key

CORPUS = Path(__file__).resolve().parents[1] / "malformed"
SNIPPET = re.compile(r"`([a-z_]+(?:\.[a-z_0-9]+)+): ([^`]+)`")


def _fixes() -> list[tuple[str, str, str]]:
    """(corpus file, key, value) of every fix that sets the problem's own key."""
    found = []
    for path in sorted(CORPUS.glob("*.yaml")):
        if path.name == "expected.yaml":
            continue
        try:
            GRPOConfigLoader(config_path=path)
        except ConfigError as exc:
            for problem in exc.problems:
                match = SNIPPET.search(problem.fix or "")
                if match and match.group(1) == problem.key:
                    found.append((path.name, match.group(1), match.group(2)))
    return found


FIXES = _fixes()


def test_the_generator_finds_the_fixes():
    assert len(FIXES) >= 15, FIXES


@pytest.mark.parametrize(("name", "key", "value"), FIXES, ids=[f"{n}:{k}" for n, k, _ in FIXES])
def test_each_printed_fix_removes_its_problem(name, key, value):
    try:
        GRPOConfigLoader(config_path=CORPUS / name, overrides=[f"{key}={value}"])
    except ConfigError as exc:
        left = [str(p) for p in exc.problems if p.key == key]
        assert not left, f"{name}: the fix `{key}: {value}` still leaves: {left}"


# ----------------------------------------------------------------------------- and loads
# A fix is applied as a user reads it: its first alternative (before ", or" / " or "), as one of
# the edits below. Fixes that only words can carry out (rename, quote, restructure) are counted.
SET = re.compile(r"`([a-z_]+(?:\.[a-z_0-9\[\]]+)+): ([^`]+)`")
MOVE = re.compile(r"move it to `([a-z_]+\.[a-z_0-9]+)`")
SET_IT = re.compile(r"set it to (?:e\.g\. )?([\w.]+)")
DELETE = re.compile(r"\b(delete|remove)\b(?! one| the| that| `lm_head`| the tag)")


def fix_edit(problem) -> tuple[str, str, object] | None:
    """(kind, key, value) of a printed fix: ("set", key, value), ("delete", key, None) or
    ("move", key, new key); None for a fix in words."""
    text = problem.fix or ""
    found = []
    if m := SET.search(text):
        found.append((m.start(), ("set", m.group(1), YAML(typ="safe").load(m.group(2)))))
    if m := MOVE.search(text):
        found.append((m.start(), ("move", problem.key, m.group(1))))
    if m := SET_IT.search(text):
        found.append((m.start(), ("set", problem.key, YAML(typ="safe").load(m.group(1)))))
    if m := DELETE.search(text):
        found.append((m.start(), ("delete", problem.key, None)))
    return min(found, key=lambda f: f[0])[1] if found and problem.key else None


def apply_edit(data: dict, edit) -> None:
    kind, key, value = edit
    *parents, last = split_key(key)
    node = data
    for part in parents:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    if kind == "set":
        node[last] = value
    else:
        moved = node.pop(last, None)
        if kind == "move":
            apply_edit(data, ("set", value, moved))


def _corpus_cases() -> list[tuple[str, list]]:
    """(corpus file, the edits of its fixes) of every file that reads as YAML and whose every
    problem has a fix that is an edit."""
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        if path.name == "expected.yaml":
            continue
        try:
            GRPOConfigLoader(config_path=path)
        except ConfigError as exc:
            edits = [fix_edit(p) for p in exc.problems]
            if edits and all(edits):
                cases.append((path.name, edits))
    return cases


CORPUS_EDITS = _corpus_cases()


def test_most_corpus_fixes_are_edits():
    assert len(CORPUS_EDITS) >= 25, [name for name, _ in CORPUS_EDITS]


def validates_and_loads(data: dict, path: Path) -> None:
    """The config validates and maps to a GRPOConfig (no training)."""
    import warnings

    from conftest import machine
    from trl import GRPOConfig

    loader = GRPOConfigLoader.from_dict(data, path=path)
    kwargs = {**loader.trl_kwargs(facts=machine()), "output_dir": str(path.parent / "unused"), "use_cpu": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GRPOConfig(**kwargs)


@pytest.mark.parametrize(("name", "edits"), CORPUS_EDITS, ids=[n for n, _ in CORPUS_EDITS])
def test_every_printed_fix_validates_and_loads(name, edits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = YAML(typ="safe").load((CORPUS / name).read_text())
    for edit in edits:
        apply_edit(data, edit)
    try:
        validates_and_loads(data, CORPUS / name)
    except (ConfigError, ValueError, TypeError) as exc:
        pytest.fail(f"{name}: after its fixes {edits} it still fails: {exc}")


# Each problem rules.py can raise, triggered by a partial config (local mode, no tracker).
RULES = {
    "both_generation_keys": {"grpo": {"generation_batch_size": 16, "steps_per_generation": 2}},
    "gbs_vs_batch": {"training": {"per_device_train_batch_size": 8}, "grpo": {"generation_batch_size": 12}},
    "gbs_vs_group": {"grpo": {"generation_batch_size": 12}},
    "auto_vs_group": {"training": {"gradient_accumulation_steps": 3}, "grpo": {"generation_batch_size": "auto"}},
    "steps_vs_group": {"grpo": {"generation_batch_size": "auto", "steps_per_generation": 3}},
    "sync_ref_model": {"grpo": {"sync_ref_model": True, "beta": 0.0}},
    "sync_ref_model_lora": {"grpo": {"sync_ref_model": True}, "model": {"lora": {"enabled": True}}},
    "log_completions_hub_repo": {"grpo": {"log_completions_hub_repo": "me/x", "log_completions": False}},
    "auto_find_batch_size": {"training": {"auto_find_batch_size": True}},
    "data_eval_every_steps": {"data": {"eval_every_steps": 5}},
    "keep_best_metric": {"data": {"test_size": 0.1}, "eval": {"keep_best": {"metric": "eval/nope"}}},
    "stop_at_metric": {"data": {"test_size": 0.1}, "eval": {"stop_at": {"metric": "eval/nope", "value": 1}}},
    "pass_reward": {"data": {"test_size": 0.1}, "eval": {"pass_reward": "nope"}},
    "patience": {"data": {"test_size": 0.1}, "eval": {"patience": 2}},
    "eval_without_held_out": {"eval": {"every_steps": 5}},
    "warmup_steps": {"training": {"warmup_steps": 1.5}},
    "seed": {"training": {"seed": -1}},
    "int64": {"training": {"max_steps": 2**64}},
    "eval_strategy": {"training": {"eval_strategy": "steps"}},
    "do_eval": {"training": {"do_eval": True}},
    "eval_on_start": {"training": {"eval_on_start": True}},
    "load_best_model_at_end": {"training": {"load_best_model_at_end": True}},
    "lr_scheduler_type": {"training": {"lr_scheduler_type": "reduce_lr_on_plateau"}},
    "interval": {"training": {"logging_steps": 2.5}},
    "torch_empty_cache_steps": {"training": {"torch_empty_cache_steps": 0}},
    "fp16": {"training": {"fp16": True}},
    "full_eval": {"training": {"fp16_full_eval": True, "bf16_full_eval": True}},
    "fsdp": {"training": {"fsdp": "fullshard"}},
    "debug": {"training": {"debug": "underflow"}},
    "ddp_backend": {"training": {"ddp_backend": "gloo"}},
    "deepspeed": {"training": {"deepspeed": "missing.json"}},
    "accelerator_config": {"training": {"accelerator_config": "missing.json"}},
    "prefetch": {"training": {"dataloader_prefetch_factor": 2}},
    "parallelism": {"training": {"parallelism_config": {"cp_size": 2}}},
    "entropy_quantile": {"grpo": {"top_entropy_quantile": -1.0}},
    "pad_word": {"grpo": {"pad_to_multiple_of": "eight"}},
    "pad_zero": {"grpo": {"pad_to_multiple_of": 0}},
    "is_mode": {"grpo": {"vllm_importance_sampling_mode": "token"}},
    "vespo_mode": {"grpo": {"loss_type": "vespo"}, "cluster": {"use_vllm": "auto"}},
    "is_clip": {"grpo": {"vllm_importance_sampling_clip_min": 5.0}},
    "is_clip_null": {
        "grpo": {"vllm_importance_sampling_mode": "token_truncate", "vllm_importance_sampling_clip_max": None}
    },
    "lora_lm_head": {"model": {"lora": {"enabled": True, "target_modules": ["c_attn", "lm_head"]}}},
    "env_name": {"env": {"MY-VAR": "1"}},
    "env_nul": {"env": {"MY_VAR": "a\x00b"}},
    "env_launcher": {"env": {"RANK": "0"}},
    "adam_beta": {"training": {"adam_beta2": -1.0}},
    "neftune": {"training": {"neftune_noise_alpha": -1.0}},
    "adam_epsilon": {"training": {"adam_epsilon": -1.0}},
    "min_lr_schedule": {"training": {"lr_scheduler_type": "cosine_with_min_lr"}},
    "wsd_schedule": {"training": {"lr_scheduler_type": "warmup_stable_decay"}},
    "polynomial_lr_end": {"training": {"lr_scheduler_type": "polynomial", "learning_rate": 1e-8}},
    "negative_workers": {"training": {"dataloader_num_workers": -1}},
    "remove_unused_columns": {"training": {"remove_unused_columns": True}},
    "persistent_workers": {"training": {"dataloader_persistent_workers": True}},
    "save_strategy_best": {"training": {"save_strategy": "best"}},
    "optimizer_package": {"training": {"optim": "adamw_anyprecision"}},
    "tracker_package": {"logging": {"report_to": ["tensorboard", "dvclive"]}},  # dvclive: not in the lock
    "push_offline": {"training": {"push_to_hub": True}, "env": {"HF_HUB_OFFLINE": "1"}},
    "max_steps_zero": {"training": {"max_steps": 0}},
    "max_samples": {"training": {"per_device_train_batch_size": 16}, "data": {"max_samples": 1}},
}


def _rule_problems(name):
    data = {"mode": "local", "logging": {"report_to": ["none"]}, **RULES[name]}
    try:
        GRPOConfigLoader.from_dict(data)
    except ConfigError as exc:
        return data, exc.problems
    return data, []


def test_every_rule_in_rules_py_is_triggered():
    """The table covers rules.py: every key a rule there names literally is a key of some trigger's problem."""
    import ast

    import grpolab.config.rules as rules

    named = set()
    for node in ast.walk(ast.parse(Path(rules.__file__).read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Problem", "add") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and "." in first.value:
                named.add(first.value)
    raised = {p.key for name in RULES for p in _rule_problems(name)[1]}
    assert named <= raised, sorted(named - raised)


# Fixes that only a person can carry out: the words say what to change.
IN_WORDS = {"env_name", "lora_lm_head"}


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_fix_validates_and_loads(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data, problems = _rule_problems(name)
    assert problems, f"{name}: {RULES[name]} raised nothing"
    edits = [fix_edit(p) for p in problems]
    if name in IN_WORDS:
        assert not all(edits), f"{name}: its fix is an edit now; drop it from IN_WORDS"
        return
    assert all(edits), f"{name}: a fix is not an edit: {[p.fix for p in problems]}"
    for edit in edits:
        apply_edit(data, edit)
    try:
        validates_and_loads(data, tmp_path / "config.yaml")
    except (ConfigError, ValueError, TypeError) as exc:
        pytest.fail(f"{name}: after its fixes {edits} it still fails: {exc}")
