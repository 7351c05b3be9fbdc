"""Every `auto` is decided in runtime/resolve.py: precision, weights, Liger, generation engine,
threads and launcher, each with its reason and key; `config explain` and `train --dry-run`
print the same decisions."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from grpolab.config import GRPOConfigLoader
from grpolab.runtime.dist import DistInfo
from grpolab.runtime.hardware import GPU, HardwareFacts
from grpolab.runtime.resolve import resolve

REPO = Path(__file__).resolve().parents[2]
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


# ----------------------------------------------------------------- the launcher's mixed precision
PRESETS = sorted((REPO / "grpolab" / "presets" / "accelerate").glob("*.yaml"))
MACHINES = {  # what `training.bf16: auto` picks by itself: fp32, bf16 or (a pre-Ampere GPU) fp16-capable fp32
    "fp32": HardwareFacts(cores=4),
    "bf16": HardwareFacts(gpus=(AMPERE,) * 2, cores=4, installed=frozenset({"deepspeed"})),
    "fp16": HardwareFacts(gpus=(VOLTA,) * 2, cores=4, installed=frozenset({"deepspeed"})),
}


@functools.cache
def cluster_config(bf16: str):
    return GRPOConfigLoader(mode="cluster", overrides=[f"training.bf16={bf16}"]).config


def accelerate_rank_env(*launch_args: str) -> dict:
    """The environment `accelerate launch LAUNCH_ARGS -m grpolab train` gives its ranks, built by
    accelerate's own launch code (accelerate/commands/launch.py: launch_command)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    parsed = launch_command_parser().parse_args([*launch_args, "--num_processes", "2", "-m", "grpolab", "train"])
    args, defaults, mp_from_config_flag = _validate_launch_command(parsed)
    if not args.use_deepspeed:
        return prepare_multi_gpu_env(args)
    fields = list(defaults.deepspeed_config.keys()) if defaults else []
    args.deepspeed_fields_from_accelerate_config = ",".join(fields + ["mixed_precision"] * mp_from_config_flag)
    return prepare_deepspeed_cmd_env(args)[1]


def launches():
    """Every packaged accelerate preset as shipped, and with each --mixed_precision flag."""
    for preset in PRESETS:
        for flag in (None, "no", "bf16", "fp16"):
            launch = ["--config_file", str(preset)] + (["--mixed_precision", flag] if flag else [])
            yield pytest.param(launch, id=f"{preset.name}-{flag or 'as-shipped'}")


@pytest.mark.parametrize("launch", list(launches()))
def test_resolve_follows_the_launchers_precision_or_names_its_file(launch):
    """On every machine and for every `training.bf16`, a rank started by `accelerate launch` with a
    packaged preset either resolves the launcher's mixed precision (and says it follows it), or
    stops with a problem that names the preset or the flag and a fix, never reaching DeepSpeed's
    "ds bf16.enabled=True vs hf bf16=False"."""
    from grpolab.runtime.dist import launcher_precision

    env = accelerate_rank_env(*launch)
    launched = launcher_precision(env, ["accelerate", "launch", *launch])
    assert launched is not None and launched.value == env["ACCELERATE_MIXED_PRECISION"]
    named = launch[-1] if "--mixed_precision" in launch else launch[1]
    assert named in launched.source
    dist = DistInfo("accelerate launch", 0, 2, 0, 2, precision=launched)
    for machine, facts in MACHINES.items():
        for bf16 in ("auto", "true", "false"):
            resolved = resolve(cluster_config(bf16), facts, dist)
            agrees = resolved.mixed_precision == launched.value and resolved.bf16 == (launched.value == "bf16")
            if agrees and not resolved.problems:
                precision = next(d for d in resolved.decisions if d.label == "precision")
                assert bf16 != "auto" or named in precision.reason, (machine, precision)
                continue
            named_problems = [p for p in resolved.problems if p.origin and named in p.origin and p.fix]
            assert named_problems, (machine, bf16, resolved.bf16, resolved.problems)
            assert "--mixed_precision" in named_problems[0].fix


def test_a_deepspeed_json_decides_only_where_it_is_explicit(tmp_path):
    from grpolab.runtime.dist import launcher_precision

    def json_precision(blocks: dict):
        path = tmp_path / "ds.json"
        path.write_text(json.dumps(blocks))
        # accelerate's mixed_precision default ("no") beside a JSON is not the user's choice
        return launcher_precision({"ACCELERATE_DEEPSPEED_CONFIG_FILE": str(path), "ACCELERATE_MIXED_PRECISION": "no"})

    assert json_precision({"bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}}) is None
    assert json_precision({}) is None
    assert json_precision({"bf16": {"enabled": True}}).value == "bf16"
    assert json_precision({"fp16": {"enabled": True}, "bf16": {"enabled": False}}).value == "fp16"
    assert json_precision({"fp16": {"enabled": False}, "bf16": {"enabled": False}}).value == "no"
    assert "ds.json" in json_precision({"bf16": {"enabled": True}}).source
    assert launcher_precision({}) is None  # no launcher: the config decides
    by_hand = launcher_precision(
        {"ACCELERATE_MIXED_PRECISION": "bf16"}, ["accelerate", "launch", "--config_file=z.yaml"]
    )
    assert by_hand.source == "mixed_precision in z.yaml" and "accelerate launch" in by_hand.fix("no")
    dist = DistInfo("accelerate launch", 0, 2, 0, 2, precision=json_precision({"bf16": {"enabled": True}}))
    (problem,) = resolve(cluster_config("false"), MACHINES["bf16"], dist).problems
    assert "ds.json" in problem.origin and '"enabled": "auto"' in problem.fix and "ds.json" in problem.fix


def test_a_fp32_machine_following_the_launchers_bf16_says_it_is_emulated():
    from grpolab.runtime.dist import LauncherPrecision

    dist = DistInfo("accelerate launch", 0, 2, 0, 2, precision=LauncherPrecision("bf16", "mixed_precision in z.yaml"))
    resolved = decide(facts=MACHINES["fp32"], mode="cluster", dist=dist)
    assert resolved.bf16 and not resolved.problems
    assert any("z.yaml" in note and "emulated" in note for note in resolved.notes)
