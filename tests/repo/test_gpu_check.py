"""bench/gpu_check/run.py, the prepared GPU check, kept working without a GPU.

The slow test runs `run.py --cpu` once and checks the report stage by stage: in the suite
`--only` SUITE_STAGES (every stage is still listed, with its timeout and why it was skipped),
with GPU_CHECK_FULL=1 every stage at toy size (the GPU-only ones skipped with their reason).
Each stage starts fresh interpreters that import torch, transformers and trl (DeepSpeed's stages
two or four each), so the full run costs several minutes on 2 cores; run it after changing a
stage or its helpers. The fast ones check the pieces its figures
come from (the peak table, weights changed, the LoRA merge check, step timing, the overhead ratio,
the memory plan, the time budget), that an overrunning stage dies with all its ranks, that a
failed import stops the setup, and that the wheels it carries follow requirements.lock.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import child_env

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gpu_check_run", REPO / "bench" / "gpu_check" / "run.py")
gpu_check = sys.modules["gpu_check_run"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(gpu_check)

# One grpolab training in its own process, the plain TRL script against it, and the micro-benchmark:
# the setup, a local run and both kinds of stage result, in a few interpreter starts.
SUITE_STAGES = ("gpu1", "plain_trl", "mfu")
FULL = os.environ.get("GPU_CHECK_FULL") == "1"
RAN = [n for n in gpu_check.STAGE_NAMES if FULL or n in SUITE_STAGES]
EXPECTED = {name: "pass" if name in RAN else "skip" for name in gpu_check.STAGE_NAMES}
EXPECTED.update(fsdp2="skip")
TRAINING = [s.name for s in gpu_check.STAGES if s.trains]


# ----------------------------------------------------------------------------- fast
def test_gpu_pins_follow_the_lock_except_the_documented_exceptions():
    """One home for versions: each carried wheel is requirements.lock's version unless
    requirements.txt overrides it with a reason; what the image keeps instead is named with why."""
    locked, carried, pins = gpu_check.lock_versions(), gpu_check.carried(), gpu_check.pins()
    missing_in_image = {"trl", "deepspeed", "datasets", "pydantic", "pydantic-core", "ruamel-yaml", "hjson", "dill"}
    assert missing_in_image | {"transformers", "peft", "accelerate"} <= set(pins)
    for name, (override, why) in carried.items():
        if override is None:
            assert pins[name] == locked[name], name
        else:
            assert why, f"{name}=={override} overrides requirements.lock without a reason"
    for name, why in gpu_check.FROM_IMAGE.items():
        assert name not in carried and why, name
    assert set(gpu_check.FROM_IMAGE) - {"torch"} <= set(locked)  # the lock leaves torch to the Makefile


def test_a_pin_the_lock_lacks_is_refused_by_name(tmp_path):
    lock, reqs = tmp_path / "requirements.lock", tmp_path / "requirements.txt"
    lock.write_text("trl==1.16.0    # via grpolab\nruamel-yaml==0.19.1\n")
    reqs.write_text("trl\nruamel.yaml\nnewpkg==2.0  # the image's hub cannot import newpkg 3\n")
    assert gpu_check.pins(reqs, lock) == {"trl": "1.16.0", "ruamel-yaml": "0.19.1", "newpkg": "2.0"}
    reqs.write_text("trl\nghost\n")
    with pytest.raises(ValueError, match="ghost: not in requirements.lock"):
        gpu_check.pins(reqs, lock)


def test_every_requirement_is_a_wheel_the_build_script_makes():
    script = (REPO / "bench" / "gpu_check" / "build_wheels.sh").read_text()
    assert "--no-deps" in script and "DS_BUILD_OPS=0" in script and "--no-build-isolation" in script
    assert 'TARGET_PY="${TARGET_PY:-3.12}"' in script  # the GPU machine's Python
    assert 'run.py" --pins' in script  # the versions come from the lock, through run.py
    done = subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_check" / "build_wheels.sh")])
    assert done.returncode == 0
    printed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check" / "run.py"), "--pins"], capture_output=True, text=True
    )
    assert printed.stdout.split() == [f"{n}=={v}" for n, v in gpu_check.pins().items()]


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
    assert t["step_time_s"] == 1.5 and t["tokens_per_s"] == pytest.approx(20 / 3) and t["trl_step_time_s"] == 0.6


def test_overhead_ratio_ignores_step_one():
    """Step 1 pays CUDA start and Triton compiles on whichever side runs first; from step 2 on
    both sides are compared by the same measure (TRL's step_time), median against median."""
    ours = [30.0, 1.0, 1.2, 1.1]
    plain = [2.0, 0.5, 0.6, 0.55]
    assert gpu_check.overhead_ratio(ours, plain) == pytest.approx(1.1 / 0.55)
    assert gpu_check.overhead_ratio([1.0, *ours[1:]], plain) == gpu_check.overhead_ratio(ours, plain)
    assert gpu_check.overhead_ratio([5.0], plain) is None  # one step: nothing from step 2 on


def test_console_records_parse_the_plain_scripts_step_lines():
    text = "{'loss': '0.01', 'step_time': '2.5', 'reward': '0'}\nnoise\n{'loss': 0.02, 'step_time': 0.4}\n"
    assert [r["step_time"] for r in gpu_check.console_records(text)] == [2.5, 0.4]


RANK = r"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a rank busy writing a checkpoint ignores SIGTERM
if sys.argv[2:] == ["rank"]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()} {child.pid}\n")
    time.sleep(600)
# the launcher: a rank in a session of its own, like torch elastic's
subprocess.Popen([sys.executable, __file__, sys.argv[1], "rank"], start_new_session=True)
with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()}\n")
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_stage_that_overruns_is_killed_with_all_its_ranks(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "KILL_GRACE_S", 1.0)
    script, pids = tmp_path / "launcher.py", tmp_path / "pids.txt"
    script.write_text(RANK)
    proc = gpu_check.start([sys.executable, str(script), str(pids)], dict(os.environ), tmp_path / "log", "t-1")
    deadline = time.monotonic() + 60
    while (
        proc.poll() is None
        and time.monotonic() < deadline
        and len(pids.read_text().split() if pids.exists() else []) < 3
    ):
        time.sleep(0.1)
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 3  # launcher, rank (own session), the rank's worker
    code, timed_out = gpu_check.wait(proc, 1.0, "t-1")
    assert timed_out and code is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(map(_gone, started)):
        time.sleep(0.1)
    assert all(map(_gone, started)), [p for p in started if not _gone(p)]
    assert gpu_check.stage_processes("t-1") == []


def test_a_killed_stage_leaves_no_op_build_lock_behind(tmp_path):
    """A lock from a JIT build the killed stage started would make every later stage wait forever."""
    old, new = tmp_path / "py311_cpu" / "old_op" / "lock", tmp_path / "py311_cpu" / "shm_comm" / "lock"
    for lock in (old, new):
        lock.parent.mkdir(parents=True)
        lock.touch()
    os.utime(old, (time.time() - 600, time.time() - 600))  # an earlier build's: not this stage's
    assert gpu_check.clear_build_locks(time.time() - 60, tmp_path) == [str(new)]
    assert old.exists() and not new.exists()


def test_op_builds_go_to_a_folder_of_the_checks_own_per_deepspeed_copy(tmp_path, monkeypatch):
    """torch's default extensions folder is shared by every venv: another checkout's DeepSpeed build
    there would make the check rebuild inside a stage. Each DeepSpeed copy gets its own folder."""
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    a, b, here = (gpu_check.extensions_dir({}, site) for site in (tmp_path / "a", tmp_path / "b", None))
    assert len({a, b, here}) == 3 and a == gpu_check.extensions_dir({}, tmp_path / "a")
    assert gpu_check.child_env(tmp_path / "a", cpu=True)["TORCH_EXTENSIONS_DIR"] == str(a)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "mine"))  # the caller's choice wins
    assert gpu_check.child_env(tmp_path / "a", cpu=True)["TORCH_EXTENSIONS_DIR"] == str(tmp_path / "mine")


def test_a_failed_import_stops_setup_with_the_package_named(tmp_path, monkeypatch):
    """The facts step imports what the stages need in order and stops at the first failure: the
    report names the package, the versions and the reason, and no model is built."""
    (tmp_path / "gpu_check_broken.py").write_text("raise ImportError('needs huggingface_hub>=2.4')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    modules = (("json", "json"), ("trl", "gpu_check_broken:GRPOTrainer"), ("never", "never_reached"))
    monkeypatch.setattr(gpu_check, "IMPORTS", modules)
    out = tmp_path / "report.json"
    code = gpu_check.main(["--cpu", "--no-install", "--out", str(out), "--work", str(tmp_path / "w")])
    report = json.loads(out.read_text())
    error = report["machine"]["import_error"]
    assert code == 1 and error["package"] == "trl" and error["found"] == gpu_check._installed("trl")
    assert "never" not in report["machine"]["versions"] and report["model"]["params"] == 0
    reason = report["stages"]["gpu1"]["reason"]
    assert reason.startswith("setup stopped: trl ") and "needs huggingface_hub>=2.4" in reason
    assert all(s["status"] == "fail" for s in report["stages"].values())


def _ctx(tmp_path, model_dir=None, cpu=True, deadline=0.0):
    return gpu_check.Context(
        cpu=cpu,
        size=gpu_check.CPU_SIZE if cpu else gpu_check.GPU_SIZE,
        work=tmp_path,
        env={},
        model_dir=Path(model_dir or tmp_path),
        params=1,
        prompt_tokens=6.0,
        machine={"gpu_memory_gib": 80.0},
        deadline=deadline,
    )


def test_memory_plan_for_every_training_stage(tmp_path, tiny_llama):
    """Each training stage's exact config is planned (world 1, vLLM off where it cannot import)."""
    ctx = _ctx(tmp_path, tiny_llama, cpu=False)
    config = tmp_path / "c.json"
    config.write_text(json.dumps(gpu_check.base_config(ctx, tmp_path / "runs")))
    for stage in gpu_check.STAGES:
        if not stage.trains:
            continue
        mode = "local" if stage.preset is None else "cluster"
        plan = gpu_check.memory_plan(ctx, mode, config, gpu_check.stage_sets(ctx, stage))
        assert plan["plan_total_gib"] > 0 and "weights" in plan["plan_components_gib"], (stage.name, plan)
    probes = [{"peak_gpu_bytes": 2**30, "peak_gpu_reserved_bytes": 3 * 2**30}, {"peak_gpu_bytes": 2**29}]
    measured = gpu_check.measured_memory(probes, {"plan_total_gib": 2.0})
    assert measured == {
        "peak_allocated_gib": 1.0,
        "allocated_over_plan": 0.5,
        "peak_reserved_gib": 3.0,
        "reserved_over_plan": 1.5,
    }


def test_the_budget_plan_and_the_start_rule():
    gpu = gpu_check.stage_plan(cpu=False, budget=gpu_check.DEFAULT_BUDGET_S["gpu"])
    assert [s["stage"] for s in gpu["stages"]] == gpu_check.STAGE_NAMES and all(s["timeout_s"] for s in gpu["stages"])
    assert gpu["worst_case_s"] <= gpu["budget_s"] and gpu["setup_s"] > 0
    # the three stages worth the most fit even if the setup and each of them run to their timeouts
    assert [s["fits_budget"] for s in gpu["stages"][:3]] == [True, True, True]
    cpu = gpu_check.stage_plan(cpu=True, budget=gpu_check.DEFAULT_BUDGET_S["cpu"])
    assert cpu["beyond_worst_case"] == [] and cpu["worst_case_s"] <= cpu["budget_s"]


def test_the_summary_lists_every_stage_with_its_timeout_and_what_the_image_keeps():
    report = {
        "mode": "gpu",
        "budget_s": 390.0,
        "plan": gpu_check.stage_plan(cpu=False, budget=390.0),
        "model": {"params": 494_000_000},
        "machine": {"gpu": "NVIDIA H100", "versions": {}},
        "packages": {"from_image": {"huggingface-hub": {"here": "1.33.0", "locked": "2.4.0", "why": "needs httpx2"}}},
        "stages": {
            "gpu1": {"status": "pass", "stage_s": 50.0, "plan_total_gib": 10.4, "peak_reserved_gib": 12.0},
            "fsdp2": {"status": "skip", "reason": "time budget: 40 s left, under 0.8 x its 75 s timeout"},
            "lora_zero3": {"status": "skip", "reason": "time budget: 40 s left, under 0.8 x its 90 s timeout"},
        },
    }
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in gpu_check.markdown(report).splitlines()[6:15]}
    assert list(rows) == gpu_check.STAGE_NAMES
    assert all(rows[s.name][2] == str(s.timeout_gpu) for s in gpu_check.STAGES)
    assert rows["gpu1"][1] == "pass" and rows["gpu1"][7] == "10.4" and rows["mfu"][1] == "-"
    text = gpu_check.markdown(report)
    assert "huggingface-hub 1.33.0 here (lock 2.4.0): needs httpx2" in text and "--only fsdp2,lora_zero3`" in text


def test_a_stage_starts_only_with_most_of_its_timeout_left(tmp_path):
    stage = gpu_check.STAGES[0]
    timeout = stage.timeout(True)
    ctx = _ctx(tmp_path, deadline=time.monotonic() + 0.75 * timeout)
    assert "time budget" in gpu_check.skip_reason(ctx, stage, None)
    ctx.deadline = time.monotonic() + 0.9 * timeout
    assert gpu_check.skip_reason(ctx, stage, None) is None
    assert gpu_check.skip_reason(ctx, stage, {"mfu"}) == "not in --only"


def test_unknown_stage_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--cpu", "--only", "gpu1,warp_drive"])
    assert exc.value.code == 2 and "warp_drive" in capsys.readouterr().err


# ----------------------------------------------------------------------------- slow: the whole check
@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    only = [] if FULL else ["--only", ",".join(SUITE_STAGES)]
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check" / "run.py"), "--cpu", "--out", str(out), *only],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=2700,
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text()), out


@pytest.mark.slow
def test_report_has_every_stage_in_value_order_within_the_budget(cpu_report):
    done, report, out = cpu_report
    assert list(report["stages"]) == gpu_check.STAGE_NAMES
    assert report["mode"] == "cpu" and report["model"]["params"] > 0 and report["packages"]["differ_here"] == {}
    plan = report["plan"]
    assert [s["stage"] for s in plan["stages"]] == gpu_check.STAGE_NAMES
    assert plan["setup_s"] + sum(s["timeout_s"] for s in plan["stages"]) <= report["budget_s"]
    assert report["elapsed_s"] <= report["budget_s"]
    assert all(report["stages"][s.name]["timeout_s"] == s.timeout(True) for s in gpu_check.STAGES)
    summary = out.with_suffix(".md").read_text()
    assert all(f"| {name} |" in summary for name in gpu_check.STAGE_NAMES) and "| timeout s |" in summary
    logs = out.with_name("gpu_check_logs.txt").read_text()
    assert all(f"===== {name}" in logs for name in RAN if EXPECTED[name] == "pass")
    # the DeepSpeed ops are built in the setup exactly when a DeepSpeed stage runs
    deepspeed_ran = any(s.engine[0] == "DEEPSPEED" for s in gpu_check.STAGES if s.name in RAN)
    assert bool(report["machine"].get("ds_ops")) == deepspeed_ran
    assert done.returncode == (1 if any(s["status"] == "fail" for s in report["stages"].values()) else 0)


@pytest.mark.slow
@pytest.mark.parametrize("stage", gpu_check.STAGE_NAMES)
def test_stage(cpu_report, stage):
    _, report, _ = cpu_report
    result = report["stages"][stage]
    assert result["status"] == EXPECTED[stage], result
    if result["status"] == "skip":
        cpu_skip = next(s.cpu_skip for s in gpu_check.STAGES if s.name == stage)
        assert result["reason"] == (cpu_skip if stage in RAN else "not in --only")
        return
    arms = result["arms"].values() if stage == "bf16_vs_fp32" else [result]
    assert all(a["ds_ops_built_in_stage"] == [] for a in arms), result  # no stage's timeout pays an op build
    if stage in TRAINING:  # the memory plan column, next to the measured peaks (none on CPU)
        assert all(a["plan_total_gib"] > 0 and a["peak_reserved_gib"] is None for a in arms), result
    if stage == "mfu":
        shapes = [(s["batch"], s["sequence"]) for s in result["shapes"]]
        assert shapes == list(gpu_check.CPU_SIZE.mfu_shapes)
        assert all(s["ms"] > 0 and 0 < s["fraction_of_measured_matmul"] for s in result["shapes"])
        return
    if stage == "bf16_vs_fp32":
        arms = result["arms"]
        assert arms["bf16_weights"]["policy_weights"] == "bfloat16"
        assert arms["fp32_weights"]["policy_weights"] == "float32"
        # AdamW straight on bf16 weights drops most updates at lr 1e-6; fp32 weights keep them all.
        assert result["weights_changed"]["bf16_weights"] < 0.5 < result["weights_changed"]["fp32_weights"]
        return
    if stage == "plain_trl":
        assert result["overhead_ratio"] > 0 and result["trl_step_time_s"] > 0
        return
    assert result["step_time_s"] > 0 and result["tokens_per_s"] > 0, result
    if stage == "seed_cluster":
        assert result["global_step"] == 3 and "training/grpo_training.py" in result["command"]
        return
    if stage == "gpu1":
        assert result["policy_weights"] == "float32" and result["saved_dtype"] == "float32"
    want_type, want_stage, _ = next(s for s in gpu_check.STAGES if s.name == stage).engine
    assert [(e["type"], e["zero_stage"]) for e in result["engines"]] == [(want_type, want_stage)]
    if stage == "sigterm_zero2":
        assert result["status_in_run"] == "interrupted" and result["checkpoints"]
        assert result["checkpoint_mib"] > 0 and result["resume"]["status"] == "pass"
        return
    assert result["status_in_run"] == "finished" and result["weights_changed"] > 0.5
    if stage == "zero3_self":
        assert result["policy_partitioned_at_load"] is True
        assert result["ds_ops_loaded"], "the probe saw no DeepSpeed op (deepspeed.comm loads one on CPU)"
    if stage == "lora_zero3":
        assert result["lora_ok"]


@pytest.mark.parametrize("stage", gpu_check.STAGES, ids=gpu_check.STAGE_NAMES)
def test_deepspeed_ops_are_built_in_setup_exactly_when_a_deepspeed_stage_runs(stage):
    """A JIT op build takes minutes on a fresh machine: the setup pays it (bounded by the facts'
    timeout) only when a stage that loads it will run, and never inside a stage's timeout."""
    deepspeed = stage.engine[0] == "DEEPSPEED"
    for cpu in (True, False):
        ops = gpu_check.ops_to_build(gpu_check.STAGES, cpu, {stage.name})
        assert ops == (list(gpu_check.DS_OPS) if deepspeed and not (cpu and stage.cpu_skip) else [])
    others = {s.name for s in gpu_check.STAGES} - {stage.name}
    assert gpu_check.ops_to_build(gpu_check.STAGES, True, others) == list(gpu_check.DS_OPS)


def test_zero3_self_is_grpolab_own_launch_on_a_gpu_and_a_hand_launch_on_cpu(tmp_path):
    stage = next(s for s in gpu_check.STAGES if s.name == "zero3_self")
    ctx = _ctx(tmp_path, cpu=True)
    hand = gpu_check.grpolab_cmd(ctx, stage, ["--set", *gpu_check.stage_sets(ctx, stage)])
    i = hand.index("--config_file")
    assert (
        hand[1:3] == ["-m", "accelerate.commands.launch"]
        and Path(hand[i + 1]) == REPO / "configs/accelerate/zero3.yaml"
    )
    assert hand[hand.index("--num_processes") + 1] == "1" and hand[hand.index("--mixed_precision") + 1] == "no"
    assert hand[hand.index("-m", 3) : hand.index("-m", 3) + 3] == ["-m", "grpolab", "train"]
    assert "grpo.beta=0.04" in hand and hand[-2:] == ["--mode", "cluster"]
    assert not any(a.startswith("cluster.backend") for a in hand)  # grpolab refuses deepspeed on CPU
    ctx = _ctx(tmp_path, cpu=False)
    sets = [a for s in gpu_check.stage_sets(ctx, stage) for a in ("--set", s)]
    own = gpu_check.grpolab_cmd(ctx, stage, sets)
    assert own[1:4] == ["-m", "grpolab", "train"] and "accelerate.commands.launch" not in own
    for item in ("cluster.backend=deepspeed", "cluster.zero_stage=3", "cluster.num_processes=1", "grpo.beta=0.04"):
        assert item in own
    assert all((REPO / "configs" / "accelerate" / s.preset).exists() for s in gpu_check.STAGES if s.preset)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("GPU_CHECK_REHEARSAL") != "1",
    reason="builds a venv like the GPU machine's image and the wheels for it (a few minutes); "
    "GPU_CHECK_REHEARSAL=1 runs it",
)
def test_rehearsal_in_a_venv_like_the_gpu_image(tmp_path):
    """run.py through the same bootstrap as on the GPU machine: the image's transformers and Hub
    client, the carried wheels installed into a private folder that shadows them."""
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check" / "rehearse.sh"), "--only", ",".join(SUITE_STAGES)],
        env={**child_env(), "REHEARSAL_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=2400,
    )
    out = tmp_path / "gpu_check.json"
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    packages, versions = report["packages"], report["machine"]["versions"]
    assert packages["site"] and {"trl", "deepspeed", "datasets", "pydantic"} <= set(packages["differ_here"])
    pins = gpu_check.pins()
    assert all(versions[name] == pins[name] for name in ("trl", "transformers", "accelerate", "deepspeed"))
    # the Hub client stays the image's: not the lock's
    assert versions["huggingface-hub"] == packages["from_image"]["huggingface-hub"]["here"]
    assert versions["huggingface-hub"] != packages["from_image"]["huggingface-hub"]["locked"]
    assert [report["stages"][s]["status"] for s in SUITE_STAGES] == ["pass"] * len(SUITE_STAGES), report["stages"]
