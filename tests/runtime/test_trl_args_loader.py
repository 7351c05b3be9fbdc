"""GRPOConfigLoader.trl_kwargs(): the spec's Python API for TRL's keyword arguments, resolved
against the machine (runtime/trl_args.py does the mapping)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import machine

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.runtime.resolve import resolve
from grpolab.runtime.trl_args import to_trl_kwargs

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- trl_kwargs
def test_trl_kwargs_generation_batch_auto_and_fixed():
    cluster = GRPOConfigLoader(mode="cluster").trl_kwargs(world_size=4)
    assert "generation_batch_size" not in cluster and "steps_per_generation" not in cluster
    local = GRPOConfigLoader(mode="local").trl_kwargs()
    assert local["generation_batch_size"] == 8 and "steps_per_generation" not in local


@pytest.mark.parametrize("gbs", ["auto", 16, 32])
@pytest.mark.parametrize("steps", [None, 2])
def test_trl_kwargs_never_both(gbs, steps):
    overrides = {"grpo.generation_batch_size": gbs, "grpo.steps_per_generation": steps}
    try:
        kwargs = GRPOConfigLoader(mode="cluster", overrides=overrides).trl_kwargs()
    except ConfigError as exc:
        assert gbs != "auto" and steps is not None and "cannot both be set" in str(exc)
        return
    assert not ("generation_batch_size" in kwargs and "steps_per_generation" in kwargs)
    assert ("generation_batch_size" in kwargs) == (gbs != "auto")
    assert ("steps_per_generation" in kwargs) == (steps is not None)


def test_trl_kwargs_mapping():
    loader = GRPOConfigLoader(
        mode="cluster",
        overrides={
            "rewards": [{"name": "numeric_match", "weight": 1.0}, {"name": "format", "weight": 0.5}],
            "generation.temperature": 0.7,
            "generation.max_completion_length": 128,
            "logging.report_to": ["none"],
        },
    )
    kwargs = loader.trl_kwargs()
    assert kwargs["reward_weights"] == [1.0, 0.5]
    assert kwargs["temperature"] == 0.7 and kwargs["max_completion_length"] == 128
    assert kwargs["report_to"] == "none"
    assert kwargs["learning_rate"] == 3e-5 and kwargs["beta"] == 0.01
    assert kwargs["output_dir"] == "./grpo_results_cluster"
    assert kwargs["use_vllm"] is False and "vllm_mode" not in kwargs


@pytest.mark.parametrize(
    "bf16, device, supported, expect_bf16, expect_cpu",
    [
        ("auto", "cpu", False, False, True),
        ("auto", "cpu", True, True, True),  # a CPU with AVX512-BF16/AMX: autocast is faster there
        ("auto", "cuda", True, True, False),
        ("auto", "cuda", False, False, False),
        (False, "cuda", True, False, False),
        (True, "cuda", True, True, False),
    ],
)
def test_trl_kwargs_precision_and_device(bf16, device, supported, expect_bf16, expect_cpu):
    loader = GRPOConfigLoader(mode="cluster", overrides={"training.bf16": bf16})
    kwargs = loader.trl_kwargs(facts=machine(device, bf16=supported))
    assert kwargs["bf16"] is expect_bf16
    assert kwargs["use_cpu"] is expect_cpu
    resolved = resolve(loader.config, machine(device, bf16=supported))
    assert to_trl_kwargs(loader.config, resolved) == kwargs  # the loader adds nothing of its own


def test_trl_kwargs_use_cpu_pass_through_forces_cpu():
    kwargs = GRPOConfigLoader(mode="cluster", overrides={"training.use_cpu": True}).trl_kwargs(
        facts=machine("cuda", bf16=True)
    )
    assert kwargs["use_cpu"] is True


def test_trl_kwargs_vllm():
    colocate = GRPOConfigLoader(mode="cluster").trl_kwargs(facts=machine("cuda", vllm=True))
    assert colocate["use_vllm"] is True and colocate["vllm_mode"] == "colocate"
    assert colocate["vllm_gpu_memory_utilization"] == 0.3 and "vllm_server_host" not in colocate
    server = GRPOConfigLoader(
        mode="cluster", overrides={"cluster.vllm_mode": "server", "cluster.vllm_server_port": 8001}
    )
    kwargs = server.trl_kwargs(facts=machine("cuda", vllm=True))
    assert (kwargs["vllm_mode"], kwargs["vllm_server_host"], kwargs["vllm_server_port"]) == ("server", "0.0.0.0", 8001)


def test_config_code_never_imports_trl_torch_transformers():
    code = textwrap.dedent(
        """
        import sys
        from grpolab.config import GRPOConfigLoader
        from grpolab.config.derive import derive
        loader = GRPOConfigLoader(mode="cluster", world_size=8)
        loader.update_param("grpo.beta", 0.05)
        from grpolab.runtime.hardware import GPU, HardwareFacts

        loader.trl_kwargs(world_size=8, facts=HardwareFacts(gpus=(GPU("g", (9, 0)),) * 8, installed={"vllm"}))
        derive(loader.config, 8, 1000)
        loader.render()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("trl", "torch", "transformers"))
        print(heavy)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
