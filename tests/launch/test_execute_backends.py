"""Every cluster backend run for real on 2 CPU ranks (gloo), started the documented hand way:

    accelerate launch --config_file configs/accelerate/<preset>.yaml --num_processes 2 \\
        --mixed_precision no -m grpolab train --config FILE --run-name NAME

The packaged presets are used as shipped; only the process count and the precision are given on
the command line, as a user on a CPU box would. DeepSpeed runs on its CPU accelerator
(DS_ACCELERATOR=cpu), which talks gloo when the oneCCL bindings are absent.

Each run trains 2 steps of the tiny Llama, and the test checks what every backend must give:
the engine each rank really trained under (recorded by a reward function, since only the ranks
can see it), one run directory with run_info.json / metrics.jsonl / summary.json, and a final
model that AutoModelForCausalLM.from_pretrained loads and that differs from the initial one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TrainResult, read_jsonl

REPO = Path(__file__).resolve().parents[2]
PRESETS = REPO / "configs" / "accelerate"

# A reward that varies between completions (so advantages, gradients and weight updates are
# non-zero), and that records, on every call, the engine this rank trains under: accelerate's
# distributed type, the ZeRO stage or FSDP version, and torch.distributed's view of the world.
ENGINE_REWARD = """
import json
import os
import zlib


def engine_reward(completions, **kwargs):
    import torch.distributed as dist
    from accelerate.state import AcceleratorState

    state = AcceleratorState()
    record = {
        "rank": dist.get_rank() if dist.is_initialized() else None,
        "world": dist.get_world_size() if dist.is_initialized() else None,
        "backend": dist.get_backend() if dist.is_initialized() else None,
        "type": state.distributed_type.value,
        "num_processes": state.num_processes,
        "zero_stage": getattr(getattr(state, "deepspeed_plugin", None), "zero_stage", None),
        "fsdp_version": getattr(getattr(state, "fsdp_plugin", None), "fsdp_version", None),
    }
    with open(os.environ["GRPOLAB_TEST_ENGINE_LOG"], "a") as handle:
        handle.write(json.dumps(record) + "\\n")
    return [(zlib.crc32(str(c).encode()) % 7) / 6.0 for c in completions]
"""

# FSDP has no CPU path in accelerate 1.15: AcceleratorState.__init__ sets DistributedType.FSDP only
# inside its branch for MULTI_GPU/MLU/SDAA/MUSA/NPU/XPU/HPU/NEURON (accelerate/state.py:986-1013).
# grpolab's CPU ranks are MULTI_CPU (runtime/trl_args.py passes use_cpu=True on CPU), so an FSDP launch
# trains DDP over gloo without a word; with use_cpu=False they are DistributedType.NO (no DDP wrapper
# at all). torch's own fully_shard does run on 2 gloo CPU ranks: only accelerate never applies it.
# Under that DDP fallback the fsdp2 preset's LoRA run merges exactly (max diff 0.0 against an offline
# merge), so a CPU run that only checks the merge cannot tell FSDP2 from DDP: check_engine does.
# DeepSpeed is not affected: its branch (state.py:974) tests ACCELERATE_USE_DEEPSPEED and the
# Accelerator's own `cpu` argument, which transformers' Trainer leaves False.

RUN_TIMEOUT_S = 900  # 2 cores shared with other jobs; DeepSpeed JIT-builds its shm op on first use


@pytest.fixture
def backend_config(tmp_path, tiny_llama, write_config):
    (tmp_path / "engine_reward.py").write_text(ENGINE_REWARD)

    def make(extra: dict | None = None) -> Path:
        settings = {
            "mode": "cluster",
            "output_dir": str(tmp_path / "runs"),
            "model": {"name_or_path": tiny_llama},
            "data": {"max_samples": 16},
            "rewards": [{"name": f"{tmp_path / 'engine_reward.py'}:engine_reward", "weight": 1.0}],
            "training": {
                "max_steps": 2,
                "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 1,
                "learning_rate": 1.0e-3,  # large enough that 2 steps visibly move the weights
                "logging_steps": 1,
                "save_steps": 1000,
                "gradient_checkpointing": False,
                "bf16": False,  # fp32 on every CPU, so accelerate's --mixed_precision no always agrees
            },
            "grpo": {"num_generations": 2, "generation_batch_size": "auto", "beta": 0.0},
            "generation": {"max_completion_length": 4},
            "logging": {"report_to": ["none"]},
            "cluster": {"device": "cpu"},
        }
        for section, values in (extra or {}).items():
            settings[section] = {**settings.get(section, {}), **values}
        return write_config(settings, "backend.yaml")

    return make


def hand_launch(
    tmp_path, config: Path, preset: str, env: dict, *sets: str, precision: str | None = "no"
) -> tuple[TrainResult, list[dict]]:
    """`accelerate launch` of a packaged preset with 2 CPU ranks; the result and the engine records.
    `precision` None: the preset's own mixed_precision, as the documented command leaves it."""
    engine_log = tmp_path / "engine.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(PRESETS / preset),
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        *(["--mixed_precision", precision] if precision else []),
        "-m",
        "grpolab",
        "train",
        "--config",
        str(config),
        "--run-name",
        "hand",
        *[arg for s in sets for arg in ("--set", s)],
    ]
    run_env = dict(env, GRPOLAB_TEST_ENGINE_LOG=str(engine_log), DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    result = TrainResult(done.returncode, done.stdout, done.stderr)
    print(f"{preset}: {time.monotonic() - started:.1f} s")
    engines = read_jsonl(engine_log) if engine_log.exists() else []
    return result, engines


def check_engine(engines: list[dict], kind: str, zero_stage=None, fsdp_version=None) -> None:
    """Both ranks scored completions, in one gloo world of 2, under the engine asked for."""
    assert {e["rank"] for e in engines} == {0, 1}, engines
    for e in engines:
        assert (e["world"], e["backend"], e["num_processes"]) == (2, "gloo", 2), e
        assert (e["type"], e["zero_stage"], e["fsdp_version"]) == (kind, zero_stage, fsdp_version), e


def check_run(tmp_path, result: TrainResult, base_model: str) -> Path:
    """One run directory, finished after 2 steps by 2 ranks, and a final model that loads and trained."""
    import torch
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path / "runs" / "hand"
    assert sorted((tmp_path / "runs").iterdir()) == [run_dir]
    assert result.run_dir == run_dir, result
    info = json.loads((run_dir / "run_info.json").read_text())
    assert (info["status"], info["global_step"], info["world_size"]) == ("finished", 2, 2), info
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r] == [1, 2]
    assert json.loads((run_dir / "summary.json").read_text())["global_step"] == 2

    trained = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    initial = AutoModelForCausalLM.from_pretrained(base_model)
    before, after = initial.state_dict(), trained.state_dict()
    assert before.keys() == after.keys()
    changed = total = 0
    for name, weight in before.items():
        assert after[name].shape == weight.shape, name  # whole tensors, not ZeRO-3 placeholders or shards
        assert torch.isfinite(after[name]).all(), name
        changed += int((after[name] != weight).sum())
        total += weight.numel()
    assert changed / total > 0.05, f"only {changed} of {total} weights changed in 2 steps at lr 1e-3"
    return run_dir


@pytest.mark.slow
def test_ddp_two_cpu_ranks(tmp_path, backend_config, tiny_llama, subprocess_env):
    """The DDP preset, started by hand on CPU: accelerate's multi-GPU launcher starts 2 ranks,
    which train DDP over gloo (accelerate's MULTI_CPU)."""
    result, engines = hand_launch(tmp_path, backend_config(), "ddp.yaml", subprocess_env)
    assert result.code == 0, result
    check_engine(engines, "MULTI_CPU")
    check_run(tmp_path, result, tiny_llama)


@pytest.mark.slow
def test_deepspeed_zero2_two_cpu_ranks(tmp_path, backend_config, tiny_llama, subprocess_env):
    result, engines = hand_launch(tmp_path, backend_config(), "zero2.yaml", subprocess_env)
    assert result.code == 0, result
    check_engine(engines, "DEEPSPEED", zero_stage=2)
    run_dir = check_run(tmp_path, result, tiny_llama)
    assert json.loads((run_dir / "run_info.json").read_text())["policy_partitioned_at_load"] is False


@pytest.mark.slow
def test_deepspeed_zero2_as_documented_names_the_preset_when_the_config_says_fp32(
    tmp_path, backend_config, subprocess_env
):
    """The documented hand launch keeps zero2.yaml's `mixed_precision: bf16`. A config that
    resolves fp32 used to die in both ranks inside DeepSpeed ("ds bf16.enabled=True vs hf
    bf16=False"); every rank now stops before the model loads with a problem naming the preset
    and the fix. (With `training.bf16: auto` the ranks follow the preset's bf16 instead:
    test_runtime_resolve.py covers every preset on every machine.)"""
    result, engines = hand_launch(tmp_path, backend_config(), "zero2.yaml", subprocess_env, precision=None)
    assert result.code != 0 and not engines, result
    assert "bf16.enabled" not in result.err, result.err[-3000:]
    assert "training.bf16: resolves to fp32, but the launcher's mixed precision is bf16" in result.err, result.err
    assert "zero2.yaml" in result.err and "--mixed_precision no" in result.err
    assert not list((tmp_path / "runs").glob("*/run_info.json"))  # refused before any model loads


@pytest.mark.slow
def test_deepspeed_zero3_with_reference_model_two_cpu_ranks(tmp_path, backend_config, tiny_llama, subprocess_env):
    """ZeRO-3 with beta > 0: the reference model is built and partitioned too, and the final save
    gathers the 16-bit weights (zero3_save_16bit_model in the preset) into a whole model."""
    result, engines = hand_launch(tmp_path, backend_config({"grpo": {"beta": 0.01}}), "zero3.yaml", subprocess_env)
    assert result.code == 0, result
    check_engine(engines, "DEEPSPEED", zero_stage=3)
    run_dir = check_run(tmp_path, result, tiny_llama)
    # The training arguments exist before the policy loads, so zero.Init partitions it at load.
    assert json.loads((run_dir / "run_info.json").read_text())["policy_partitioned_at_load"] is True
    assert any("kl" in r for r in read_jsonl(run_dir / "metrics.jsonl")), "beta > 0 but no KL was logged"


@pytest.mark.slow
def test_fsdp_on_cpu_ranks_is_refused_instead_of_training_ddp(tmp_path, backend_config, subprocess_env):
    """accelerate applies FSDP only on GPUs: on CPU ranks `distributed_type: FSDP` would quietly
    train DDP over gloo, so every rank stops with the reason before loading anything."""
    result, _ = hand_launch(tmp_path, backend_config(), "fsdp2.yaml", subprocess_env)
    assert result.code != 0
    assert "accelerate runs FSDP on GPUs only" in result.err
    assert not list((tmp_path / "runs").glob("*/run_info.json"))
