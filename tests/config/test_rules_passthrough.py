"""What validates, trains (issue 16, section 3): every value TRL's GRPOConfig, transformers'
TrainingArguments or GRPOTrainer's init would reject is a validation problem with the fix, found
before any model loads; the property test draws pass-through values and checks that the loader
and `GRPOConfig(**loader.trl_kwargs())` agree."""

from __future__ import annotations

import warnings

import pytest
from conftest import machine
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.runtime.hardware import HardwareFacts
from grpolab.runtime.resolve import resolve

BASE = {"mode": "local", "logging": {"report_to": ["none"]}}


def load(**sections) -> GRPOConfigLoader:
    return GRPOConfigLoader.from_dict({**BASE, **sections})


def problems_of(**sections) -> str:
    with pytest.raises(ConfigError) as info:
        load(**sections)
    assert info.value.kind == "invalid config"
    return str(info.value)


# ----------------------------------------------------------------------------- the issue's examples
def test_eval_strategy_is_refused_with_the_held_out_fix():
    message = problems_of(training={"eval_strategy": "steps"})
    assert "training.eval_strategy: `steps` starts TRL's evaluation loop" in message
    assert "`data.eval_every_steps: N`" in message and "data.eval_split" in message
    load(training={"eval_strategy": "no"})  # the default stays valid


def test_fp16_with_bf16_auto_is_refused_and_fp16_alone_needs_a_gpu():
    message = problems_of(training={"fp16": True})
    assert "training.fp16: and training.bf16 = auto would both be on" in message
    assert "set `training.bf16: false`" in message
    cfg = load(training={"fp16": True, "bf16": False}).config
    cpu = resolve(cfg, machine("cpu"))
    assert [p.key for p in cpu.problems] == ["training.fp16"]
    assert "training runs on CPU" in str(cpu.problems[0])
    assert resolve(cfg, machine("cuda", bf16=True)).problems == ()


def test_float16_weights_on_cpu_are_a_problem_before_loading():
    cfg = load(model={"dtype": "float16"}).config
    problems = resolve(cfg, machine("cpu")).problems
    assert [p.key for p in problems] == ["model.dtype"] and "model.dtype: auto" in str(problems[0])
    assert resolve(cfg, machine("cuda")).problems == ()


def test_tf32_and_fp16_mixed_precision_need_a_gpu():
    cfg = load(training={"tf32": True}, cluster={"mixed_precision": "fp16"}, mode="cluster").config
    keys = [p.key for p in resolve(cfg, machine("cpu")).problems]
    assert keys == ["training.tf32", "cluster.mixed_precision"]


def test_env_numbers_and_booleans_are_the_strings_the_shell_sees(tmp_path, capsys):
    path = tmp_path / "env.yaml"
    path.write_text("env:\n  CUDA_VISIBLE_DEVICES: 0\n  OMP_NUM_THREADS: 4\n  WANDB_SILENT: true\n  RATIO: 0.5\n")
    loader = GRPOConfigLoader(config_path=path)
    assert loader.config.env == {
        "CUDA_VISIBLE_DEVICES": "0",
        "OMP_NUM_THREADS": "4",
        "WANDB_SILENT": "true",
        "RATIO": "0.5",
    }
    assert main(["config", "validate", str(path)]) == 0
    loader.update_param("env.CUDA_VISIBLE_DEVICES", 1)
    assert loader.get_param("env.CUDA_VISIBLE_DEVICES") == "1"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"WORLD_SIZE": 2}, "env.WORLD_SIZE: is set per rank by the launcher"),
        ({"LOCAL_RANK": "0"}, "env.LOCAL_RANK: is set per rank"),
        ({"GRPOLAB_RUN_DIR": "/tmp/x"}, "env.GRPOLAB_RUN_DIR: is set per rank"),
        ({"MY-VAR": "x"}, "env.MY-VAR: is not an environment variable name"),
        ({"1ST": "x"}, "env.1ST: is not an environment variable name"),
        ({"A": "x\x00y"}, "env.A: holds a NUL character"),
        ({"A": None}, "env.A: Input should be a valid string"),
        ({"A": {"b": 1}}, "env.A: Input should be a valid string"),
    ],
)
def test_env_entries_that_would_crash_train_are_refused(env, fragment):
    assert fragment in problems_of(env=env)


def test_a_run_that_trains_nothing_is_an_error_and_one_step_a_warning():
    assert "training.max_steps: is 0: the run would train nothing" in problems_of(training={"max_steps": 0})
    one = load(training={"max_steps": 1})
    assert any(w.key == "training.max_steps" and "one optimizer step" in w.message for w in one.warnings)
    # data.max_samples bounds the rows: fewer than one round's prompts drops them all.
    small = {"per_device_train_batch_size": 16}
    message = problems_of(data={"max_samples": 1}, training=small, grpo={"generation_batch_size": "auto"})
    assert "1 prompts are fewer than one generation round (2 prompts" in message
    assert "`data.max_samples: 2`" in message
    # Exactly one round and one epoch: one optimizer step, a warning.
    almost = load(
        data={"max_samples": 2}, training={**small, "num_train_epochs": 1}, grpo={"generation_batch_size": "auto"}
    )
    assert any(w.key == "data.max_samples" and "at most 1 optimizer step" in w.message for w in almost.warnings)
    assert not [w for w in load(data={"max_samples": 200}).warnings if w.key == "data.max_samples"]


def test_step_intervals_keep_whole_numbers_whole(tmp_path):
    loader = load(training={"save_steps": 200, "logging_steps": 5, "warmup_steps": 10})
    data = loader.to_dict()["training"]
    assert (data["save_steps"], data["logging_steps"], data["warmup_steps"]) == (200, 5, 10)
    assert all(type(data[k]) is int for k in ("save_steps", "logging_steps", "warmup_steps"))
    saved = GRPOConfigLoader(mode="local")
    saved.update_param("training.save_steps", 300)
    out = saved.save_config(tmp_path / "x.yaml")
    assert "save_steps: 300" in out.read_text() and "300.0" not in out.read_text()
    assert type(load(training={"warmup_steps": 0.1}).to_dict()["training"]["warmup_steps"]) is float


# ----------------------------------------------------------------------------- the property test
# Where grpolab is deliberately stricter than GRPOConfig's constructor: the value constructs a
# GRPOConfig, then fails later (trainer init, first evaluation, first forward pass) or trains nothing.
STRICTER = {
    "training.eval_strategy": "TRL's evaluation loop has no eval_dataset in a grpolab run",
    "training.do_eval": "same",
    "training.load_best_model_at_end": "same",
    "training.lr_scheduler_type": "reduce_lr_on_plateau / greedy step on an evaluation metric",
    "training.fp16": "fp16 autocast fails on CPU; with bf16 auto both may turn on",
    "training.max_steps": "0 trains nothing",
    "grpo.sync_ref_model": "GRPOTrainer needs a reference model (beta > 0) to sync",
    # Schema bounds TRL's constructor does not check:
    "training.num_train_epochs": "0 or fewer epochs train nothing",
    "training.per_device_train_batch_size": "0 completions per device: an empty batch, nothing trains",
    "training.gradient_accumulation_steps": "0: TRL divides the loss by it",
    "training.max_grad_norm": "a negative norm clips every gradient to a negative scale",
    "grpo.beta": "a negative KL coefficient rewards drifting away from the reference model",
    "grpo.steps_per_generation": "0: generation rounds of 0 completions",
    "grpo.generation_batch_size": "0: generation rounds of 0 completions",
    "grpo.vllm_importance_sampling_mode": "read by the trainer (VESPO: at init; vLLM's correction: mid-run)",
    "training.warmup_steps": "a fraction above 1 (1.5) is truncated to whole steps without a word",
    "training.logging_steps": "0 or less: with the steps strategy transformers divides by it",
    "training.save_steps": "0 or less: with the steps strategy transformers divides by it",
    "training.save_strategy": "`best` needs metric_for_best_model, a TRL evaluation metric (Trainer init)",
    "grpo.pad_to_multiple_of": "0 or less: TRL's pad() divides by it in the first step",
}

INTERVAL = st.one_of(st.integers(-1, 3), st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.5]))
TRAINING = {
    "eval_strategy": st.sampled_from(["no", "steps", "epoch"]),
    "do_eval": st.booleans(),
    "save_strategy": st.sampled_from(["no", "steps", "epoch", "best"]),
    "logging_strategy": st.sampled_from(["no", "steps", "epoch"]),
    "eval_steps": st.one_of(st.none(), INTERVAL),
    "logging_steps": INTERVAL,
    "save_steps": INTERVAL,
    "warmup_steps": st.one_of(st.integers(-1, 3), st.sampled_from([0.1, 0.5, 1.5])),
    "load_best_model_at_end": st.booleans(),
    "lr_scheduler_type": st.sampled_from(["linear", "cosine", "constant", "reduce_lr_on_plateau", "greedy"]),
    "fp16": st.booleans(),
    "bf16": st.sampled_from([True, False, "auto"]),
    "torch_empty_cache_steps": st.one_of(st.none(), st.integers(-1, 3)),
    "dataloader_num_workers": st.integers(0, 2),
    "dataloader_prefetch_factor": st.one_of(st.none(), st.integers(1, 2)),
    "debug": st.sampled_from(["", "underflow_overflow", "underflow", "tpu_metrics_debug underflow_overflow"]),
    "fsdp": st.sampled_from(["", "full_shard", "full_shard auto_wrap", "fullshard"]),
    "max_steps": st.integers(-2, 3),
    "num_train_epochs": st.sampled_from([0.0, 0.5, 1.0, -1.0]),
    "per_device_train_batch_size": st.integers(0, 8),
    "gradient_accumulation_steps": st.integers(0, 3),
    "auto_find_batch_size": st.booleans(),
    "max_grad_norm": st.sampled_from([-1.0, 0.0, 1.0]),
    "lr_scheduler_kwargs": st.sampled_from([{}, '{"min_lr": 0.0}', "{min_lr: 0}", "{}"]),
}
GRPO = {
    "generation_batch_size": st.one_of(st.just("auto"), st.integers(0, 24)),
    "steps_per_generation": st.one_of(st.none(), st.integers(0, 3)),
    "num_generations": st.integers(1, 8),
    "pad_to_multiple_of": st.sampled_from([None, 8, 0, "auto", "none", "NULL", "16", "0", "eight"]),
    "vllm_importance_sampling_mode": st.sampled_from(["sequence_mask", "token_truncate", "token"]),
    "vllm_importance_sampling_clip_min": st.one_of(st.none(), st.sampled_from([0.5, 2.0, 5.0])),
    "vllm_importance_sampling_clip_max": st.one_of(st.none(), st.sampled_from([1.0, 3.0])),
    "loss_type": st.sampled_from(["dapo", "vespo"]),
    "log_completions": st.booleans(),
    "log_completions_hub_repo": st.sampled_from([None, "me/completions"]),
    "beta": st.sampled_from([0.0, 0.04, -0.1]),
    "sync_ref_model": st.booleans(),
}


def _drawn(section: dict, keys):
    return st.fixed_dictionaries({}, optional={k: section[k] for k in keys})


def _trl_accepts(loader) -> Exception | None:
    from trl import GRPOConfig

    kwargs = loader.trl_kwargs()
    kwargs.update(use_cpu=True, output_dir="unused")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GRPOConfig(**kwargs)
    except (ValueError, TypeError) as exc:
        return exc
    return None


def _trl_accepts_raw(training: dict, grpo: dict) -> Exception | None:
    """For a config the loader refuses: GRPOConfig on the same values, as a TRL user would pass them."""
    from trl import GRPOConfig

    # The same values over the same preset: the valid base config's kwargs with the drawn ones on top.
    kwargs = {**load().trl_kwargs(), **training, **grpo, "use_cpu": True, "output_dir": "unused"}
    if kwargs.get("bf16") == "auto":
        kwargs["bf16"] = False  # what auto decides on this test's CPU (no native bf16)
    for key in ("generation_batch_size", "steps_per_generation"):
        if kwargs.get(key) in ("auto", None):
            kwargs.pop(key, None)  # as runtime/trl_args.py does: TRL derives it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GRPOConfig(**kwargs)
    except Exception as exc:  # noqa: BLE001 - any refusal counts: TRL's own checks raise several kinds
        return exc
    return None


# No shrinking: each step builds a GRPOConfig, and shrinking took minutes; the failing draw is
# printed as drawn (a few keys).
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    training=_drawn(TRAINING, TRAINING),
    grpo=_drawn(GRPO, GRPO),
)
def test_validate_accepts_exactly_what_grpo_config_accepts(training, grpo, tmp_path_factory):
    try:
        loader = load(training=dict(training), grpo=dict(grpo))
        refused = list(resolve(loader.config, HardwareFacts()).problems)
    except ConfigError as exc:
        loader, refused = None, exc.problems
    if loader is not None and not refused:
        error = _trl_accepts(loader)
        assert error is None, f"validated, but GRPOConfig refused it: {error}"
        return
    error = _trl_accepts_raw(dict(training), dict(grpo))
    if error is None:  # TRL's constructor takes it: grpolab must have a documented reason to refuse
        unexplained = [str(p) for p in refused if p.key not in STRICTER]
        assert not unexplained, f"refused, but GRPOConfig accepts it: {unexplained}"


def test_the_property_test_knows_every_stricter_rule():
    """Each STRICTER key is a rule that fires (so the list cannot hide a refusal that has no rule)."""
    examples = {
        "training.eval_strategy": {"training": {"eval_strategy": "steps"}},
        "training.do_eval": {"training": {"do_eval": True}},
        "training.load_best_model_at_end": {"training": {"load_best_model_at_end": True}},
        "training.lr_scheduler_type": {"training": {"lr_scheduler_type": "greedy"}},
        "training.fp16": {"training": {"fp16": True}},
        "training.max_steps": {"training": {"max_steps": 0}},
        "grpo.sync_ref_model": {"grpo": {"sync_ref_model": True, "beta": 0.0}},
        "training.num_train_epochs": {"training": {"num_train_epochs": 0.0}},
        "training.per_device_train_batch_size": {"training": {"per_device_train_batch_size": 0}},
        "training.gradient_accumulation_steps": {"training": {"gradient_accumulation_steps": 0}},
        "training.max_grad_norm": {"training": {"max_grad_norm": -1.0}},
        "grpo.beta": {"grpo": {"beta": -0.1}},
        "grpo.steps_per_generation": {"grpo": {"steps_per_generation": 0, "generation_batch_size": "auto"}},
        "grpo.generation_batch_size": {"grpo": {"generation_batch_size": 0}},
        "training.logging_steps": {"training": {"logging_steps": -1}},
        "training.warmup_steps": {"training": {"warmup_steps": 1.5}},
        "grpo.vllm_importance_sampling_mode": {"grpo": {"vllm_importance_sampling_mode": "token"}},
        "training.save_steps": {"training": {"save_steps": 0}},
        "training.save_strategy": {"training": {"save_strategy": "best"}},
        "grpo.pad_to_multiple_of": {"grpo": {"pad_to_multiple_of": 0}},
    }
    assert set(examples) == set(STRICTER)
    for key, sections in examples.items():
        assert f"{key}:" in problems_of(**sections)
