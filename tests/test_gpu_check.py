"""bench/gpu_check/run.py, the prepared GPU check, kept working without a GPU.

The slow test runs `run.py --cpu` once (every stage at toy size, the GPU-only ones skipped with
their reason) and checks the report stage by stage; the fast ones check the pieces its figures
come from (the peak table, weights changed, the LoRA merge check, step timing) and that the pins
it installs on the GPU machine are the versions this checkout is tested with.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from conftest import child_env

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check_run", REPO / "bench" / "gpu_check" / "run.py")
gpu_check = sys.modules["gpu_check_run"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(gpu_check)

EXPECTED = {name: "pass" for name in gpu_check.STAGE_NAMES}
EXPECTED.update(fsdp2="skip", vllm_colocate="skip", zero3_vllm="skip")


# ----------------------------------------------------------------------------- fast
def test_requirements_pin_the_versions_this_checkout_runs():
    """The GPU machine gets exactly what the CPU tests run against, one pin per package."""
    pins = gpu_check.pins()
    assert {"trl", "deepspeed", "datasets", "pydantic", "ruamel.yaml", "transformers", "peft"} <= set(pins)
    assert {name: metadata.version(name) for name in pins} == pins


def test_every_requirement_is_a_wheel_the_build_script_makes():
    script = (REPO / "bench" / "gpu_check" / "build_wheels.sh").read_text()
    assert "--no-deps" in script and "DS_BUILD_OPS=0" in script and "--no-build-isolation" in script
    assert 'TARGET_PY="${TARGET_PY:-3.12}"' in script  # the GPU machine's Python
    done = subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_check" / "build_wheels.sh")])
    assert done.returncode == 0


def test_peak_table_by_gpu_name():
    assert gpu_check.peak_for("NVIDIA H200")[0] == 989e12
    assert gpu_check.peak_for("NVIDIA H100 PCIe")[0] == 756e12  # the longer name wins over "H100"
    assert gpu_check.peak_for("NVIDIA A100-SXM4-80GB")[0] == 312e12
    peak, why = gpu_check.peak_for("Some New GPU")
    assert peak is None and "BF16_PEAK_FLOPS" in why


def _save(folder: Path, tensors: dict) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_weights_changed_counts_elements_after_casting_to_the_saved_dtype(tmp_path):
    import torch

    base = {"a": torch.arange(8, dtype=torch.float32) / 3, "b": torch.ones(2, 2)}
    same_in_bf16 = {k: v.to(torch.bfloat16) for k, v in base.items()}
    initial = _save(tmp_path / "initial", base)
    assert gpu_check.weights_changed(initial, _save(tmp_path / "bf16", same_in_bf16))["weights_changed"] == 0.0
    moved = {"a": base["a"].clone(), "b": base["b"].clone()}
    moved["a"][:3] += 1.0
    result = gpu_check.weights_changed(initial, _save(tmp_path / "moved", moved))
    assert result["weights_changed"] == pytest.approx(3 / 12) and result["saved_dtype"] == "float32"
    sharded = gpu_check.weights_changed(initial, _save(tmp_path / "shard", {"a": torch.zeros(0), "b": base["b"]}))
    assert sharded["weights_changed"] is None and "shape" in sharded["weights_error"]


def test_lora_merge_check_finds_empty_untrained_and_wrong_merges(tmp_path):
    import torch

    torch.manual_seed(0)
    w = torch.randn(6, 4)
    a, b = torch.randn(2, 4), torch.randn(6, 2)
    initial = _save(tmp_path / "base", {"model.layers.0.q.weight": w})
    key = "base_model.model.model.layers.0.q"

    def run_dir(name, merged, lora_a=a, lora_b=b):
        folder = tmp_path / name
        _save(folder / "adapter", {f"{key}.lora_A.weight": lora_a, f"{key}.lora_B.weight": lora_b})
        _save(folder / "model", {"model.layers.0.q.weight": merged})
        return folder

    good = gpu_check.lora_merge_check(initial, run_dir("good", w + 2.0 * (b @ a)), alpha=4, r=2)
    assert good["lora_ok"] and good["lora_modules"] == 1
    assert not gpu_check.lora_merge_check(initial, run_dir("unmerged", w), alpha=4, r=2)["lora_ok"]
    untrained = run_dir("untrained", w, lora_b=torch.zeros(6, 2))
    assert not gpu_check.lora_merge_check(initial, untrained, alpha=4, r=2)["lora_ok"]
    empty = gpu_check.lora_merge_check(initial, run_dir("empty", w, lora_a=torch.zeros(0)), alpha=4, r=2)
    assert not empty["lora_ok"] and "empty adapter tensors" in empty["lora_error"]


def test_step_timing_leaves_out_the_first_step():
    records = [
        {"step": 1, "loss": 0.0, "time": 100.0, "num_tokens": 10, "step_time": 9.0},
        {"step": 2, "loss": 0.0, "time": 101.0, "num_tokens": 20, "step_time": 0.5},
        {"step": 3, "loss": 0.0, "time": 103.0, "num_tokens": 30, "step_time": 0.7},
        {"step": 3, "train_runtime": 12.0},
    ]
    t = gpu_check.timing(records)
    assert t["step_time_s"] == 1.5 and t["tokens_per_s"] == pytest.approx(20 / 3) and t["train_part_s"] == 0.6


def test_unknown_stage_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--cpu", "--only", "gpu1,warp_drive"])
    assert exc.value.code == 2 and "warp_drive" in capsys.readouterr().err


# ----------------------------------------------------------------------------- slow: the whole check
@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check" / "run.py"), "--cpu", "--out", str(out)],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text()), out


@pytest.mark.slow
def test_report_has_every_stage_in_priority_order(cpu_report):
    done, report, out = cpu_report
    assert list(report["stages"]) == gpu_check.STAGE_NAMES
    assert report["mode"] == "cpu" and report["model"]["params"] > 0 and report["packages"]["differ_here"] == {}
    assert report["elapsed_s"] <= report["budget_s"]
    summary = out.with_suffix(".md").read_text()
    assert all(f"| {name} |" in summary for name in gpu_check.STAGE_NAMES)
    assert out.with_name("gpu_check_logs.txt").read_text().count("===== ") >= 7
    assert done.returncode == (1 if any(s["status"] == "fail" for s in report["stages"].values()) else 0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage",
    [name for name in gpu_check.STAGE_NAMES],
)
def test_stage(cpu_report, stage):
    _, report, _ = cpu_report
    result = report["stages"][stage]
    assert result["status"] == EXPECTED[stage], result
    if result["status"] == "skip":
        assert result["reason"]
        return
    if stage == "bf16_vs_fp32":
        arms = result["arms"]
        assert arms["bf16_weights"]["policy_weights"] == "bfloat16"
        assert arms["fp32_weights"]["policy_weights"] == "float32"
        # AdamW straight on bf16 weights drops most updates at lr 1e-6; fp32 weights keep them all.
        assert result["weights_changed"]["bf16_weights"] < 0.5 < result["weights_changed"]["fp32_weights"]
        return
    assert result["step_time_s"] > 0 and result["tokens_per_s"] > 0, result
    assert result["flop_fraction_of_peak"] > 0 and result["peak_gpu_mib"] is None  # no GPU here
    if stage == "plain_trl":
        assert result["overhead_ratio"] > 0
        return
    want_type, want_stage, _ = next(s for s in gpu_check.STAGES if s.name == stage).engine
    assert [(e["type"], e["zero_stage"]) for e in result["engines"]] == [(want_type, want_stage)]
    if stage == "sigterm_zero2":
        assert result["status_in_run"] == "interrupted" and result["checkpoints"]
        return
    assert result["status_in_run"] == "finished" and result["weights_changed"] > 0.5
    if stage == "lora_zero3":
        assert result["lora_ok"]


def test_backend_stages_start_the_hand_launch_or_grpolab_own_launch(tmp_path):
    stage = next(s for s in gpu_check.STAGES if s.name == "zero3_ref")
    ctx = gpu_check.Context(
        cpu=True,
        size=gpu_check.CPU_SIZE,
        work=tmp_path,
        env={},
        model_dir=tmp_path,
        params=1,
        prompt_tokens=6.0,
        machine={},
        peak_flops=None,
        peak_source="",
        deadline=0.0,
    )
    hand = gpu_check.grpolab_cmd(ctx, stage, tmp_path / "c.json", "r", stage.sets)
    i = hand.index("--config_file")
    assert (
        hand[1:3] == ["-m", "accelerate.commands.launch"]
        and Path(hand[i + 1]) == REPO / "configs/accelerate/zero3.yaml"
    )
    assert hand[hand.index("--num_processes") + 1] == "1" and hand[hand.index("--mixed_precision") + 1] == "no"
    assert hand[hand.index("-m", 3) : hand.index("-m", 3) + 3] == ["-m", "grpolab", "train"]
    assert "grpo.beta=0.04" in hand and hand[-2:] == ["--mode", "cluster"]
    ctx.launch = "self"
    own = gpu_check.grpolab_cmd(ctx, stage, tmp_path / "c.json", "r", stage.sets)
    assert own[1:4] == ["-m", "grpolab", "train"] and "accelerate.commands.launch" not in own
    for item in ("cluster.backend=deepspeed", "cluster.zero_stage=3", "cluster.num_processes=1", "cluster.device=cpu"):
        assert item in own
    assert all((REPO / "configs" / "accelerate" / s.preset).exists() for s in gpu_check.STAGES if s.preset)
