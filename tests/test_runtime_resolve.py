"""Every `auto` is decided in runtime/resolve.py: precision, weights, Liger, generation engine,
threads and launcher, each with its reason and key; `config explain` and `train --dry-run`
print the same decisions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grpolab.config import GRPOConfigLoader
from grpolab.runtime.dist import DistInfo
from grpolab.runtime.hardware import GPU, HardwareFacts
from grpolab.runtime.resolve import resolve

REPO = Path(__file__).resolve().parents[1]
AMPERE, VOLTA = GPU("A100", (8, 0)), GPU("V100", (7, 0))
FOUR_CORES = HardwareFacts(cores=4)


def decide(*sets, facts=FOUR_CORES, mode="local", **kwargs):
    return resolve(GRPOConfigLoader(mode=mode, overrides=list(sets)).config, facts, **kwargs)


def test_bf16_auto_only_where_it_is_native():
    assert decide(facts=HardwareFacts(gpus=(AMPERE,))).bf16
    assert not decide(facts=HardwareFacts(gpus=(VOLTA,))).bf16  # emulated bf16 is slower than fp32
    assert decide(facts=HardwareFacts(cpu_bf16=True)).bf16
    assert not decide(facts=HardwareFacts(cpu_bf16=False)).bf16
    assert not decide("training.bf16=false", facts=HardwareFacts(gpus=(AMPERE,))).bf16
    assert decide("training.bf16=false", facts=HardwareFacts(gpus=(AMPERE,))).mixed_precision == "no"


def test_engines_only_where_installed_and_on_a_gpu():
    gpu = HardwareFacts(gpus=(AMPERE,), installed=frozenset({"vllm", "liger_kernel"}))
    on = decide(facts=gpu, mode="cluster")
    assert on.use_vllm and on.liger
    off = decide(facts=HardwareFacts(installed=frozenset({"vllm", "liger_kernel"})), mode="cluster")
    assert not off.use_vllm and not off.liger


def test_settings_the_machine_cannot_honour_are_problems_with_fixes():
    resolved = decide("cluster.use_vllm=true", "training.use_liger_kernel=true", "cluster.device=cuda")
    keys = {p.key: p for p in resolved.problems}
    assert set(keys) == {"cluster.use_vllm", "training.use_liger_kernel", "cluster.device"}
    assert all(p.fix for p in resolved.problems)


def test_threads_and_launcher():
    assert decide(facts=HardwareFacts(cores=8)).threads == 8
    ranks = decide(facts=HardwareFacts(cores=8), dist=DistInfo("torchrun", 1, 4, 1, 4))
    assert ranks.threads == 2 and ranks.launcher.startswith("torchrun (rank 1 of 4)")
    cpu2 = decide("cluster.num_processes=2", "cluster.device=cpu", mode="cluster")
    assert (cpu2.world_size, cpu2.launcher) == (2, "torchrun")
    gpus = decide(facts=HardwareFacts(gpus=(AMPERE,) * 4), mode="cluster")
    assert (gpus.world_size, gpus.launcher) == (4, "accelerate launch")


def test_cluster_mode_without_a_gpu_says_it_trains_on_cpu():
    def warned(resolved):
        return any("no CUDA GPU is visible: training runs on CPU" in note for note in resolved.notes)

    assert warned(decide(mode="cluster"))
    assert not warned(decide("cluster.device=cpu", mode="cluster"))  # asked for: no warning
    assert not warned(decide(mode="local"))  # local mode is meant for CPUs too
    assert not warned(decide(mode="cluster", facts=HardwareFacts(gpus=(AMPERE,))))


def test_every_decision_names_its_key_and_reason():
    resolved = decide()
    assert len(resolved.decisions) == len(resolved.table()) >= 9
    assert all(d.key and d.reason and d.value for d in resolved.decisions)
    assert json.loads(json.dumps(resolved.to_dict()))["decisions"][0]["label"] == "device"


def _decision_lines(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "decisions for this machine" in line) + 1
    return [line.strip() for line in lines[start : start + 10]]


@pytest.mark.slow
def test_explain_and_dry_run_print_the_same_decisions(tmp_path, subprocess_env, tiny_gpt2):
    """The same config explained and dry-run on this machine: identical decision lines."""
    args = [
        "--model",
        tiny_gpt2,
        "--output-dir",
        str(tmp_path / "runs"),
        "--set",
        "generation.max_completion_length=8",
    ]
    explain = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpolab",
            "config",
            "explain",
            "--set",
            f"model.name_or_path={tiny_gpt2}",
            "--set",
            "generation.max_completion_length=8",
            "--json",
        ],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert explain.returncode == 0, explain.stderr
    decisions = json.loads(explain.stdout)["runtime"]["decisions"]
    dry = subprocess.run(
        [sys.executable, str(REPO / "training" / "grpo_training.py"), *args, "--dry-run"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert dry.returncode == 0, dry.stderr
    shown = _decision_lines(dry.stdout)
    assert len(shown) == len(decisions)
    for line, d in zip(shown, decisions):
        assert line.startswith(d["label"]) and d["value"] in line and f"{d['reason']} ({d['key']})" in line
