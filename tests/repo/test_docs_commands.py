"""Every command in README.md and docs/*.md (docs/cluster.md has its own test,
test_docs_cluster.py), as written: each fenced `bash` line and each `python` block either runs here
in a scratch folder laid out like a fresh clone (tracked files only), or is listed with the reason it
cannot run offline. A command added to the docs fails this test until it is run or explained."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, copy_tracked

DOCS = [REPO_ROOT / "README.md", *sorted(p for p in (REPO_ROOT / "docs").glob("*.md") if p.name != "cluster.md")]
HUB = "downloads gpt2 from the Hub"
ELSEWHERE = {
    "make demo": "trains the demo model for about a minute; tests/demo/test_addition.py runs the same pipeline",
    "make test": "runs this test suite",
    "make test-fast": "runs this test suite",
    "make bench": "runs the benchmarks (~15 min)",
    "make venv": "make test runs it first; tests/repo/test_environment_lock.py checks what it installed",
    "make lock": "re-resolves requirements.lock (network); tests/repo/test_environment_lock.py checks the lock",
    "make upgrade": "moves to newer releases (network), then the suite; tests/config/test_trl_compat.py checks pins",
    "python3 -m venv .venv && .venv/bin/pip install torch": "a GPU user's own CUDA torch (a multi-GB download)",
    "python training/grpo_training.py --model gpt2": HUB,
    "python training/grpo_training.py --model gpt2 --mode cluster": HUB,
    "python training/grpo_training.py --model gpt2 --config configs/my_custom_config.yaml": HUB,
    "python training/grpo_training.py --model gpt2 --set training.learning_rate=1e-4 --set grpo.beta=0.05": HUB,
    "python training/grpo_training.py --model gpt2 --config configs/grpo_cluster_experiment1.yaml": HUB,
    "python training/grpo_training.py --model ./my_local_model --dry-run": (
        "needs a model folder of the user's; --dry-run on a local model folder is run in test_train_errors.py"
    ),
    "python training/grpo_training.py --resume grpo_results_local/grpo_local_20261126-101500": (
        "needs that run's checkpoint; resume runs in tests/train/test_resume.py"
    ),
    "grpolab train --resume grpo_results_local/grpo_local_20261126-101500 --set training.max_steps=400": (
        "needs that run's checkpoint; training a finished run longer runs in tests/train/test_resume_finished.py"
    ),
    "grpolab compare grpo_results_local --metric reward --metric kl --smooth 8 --out docs/img/compare.png": (
        "needs the four trained sweep runs; compare of real runs is in tests/experiment/test_runs.py"
    ),
}
METHOD_2 = "python: from configs.grpo_config import GRPOConfigLoader"
EXPERIMENT = "configs/grpo_cluster_experiment1.yaml"
# command -> (exit code, a fragment of its output, what the scratch folder needs first)
EXPECTED = {
    f"grpolab config validate {EXPERIMENT}": (0, "ok (mode cluster", "method 2"),
    "grpolab config show --mode cluster --set grpo.beta=0.05": (0, "beta: 0.05", None),
    "grpolab config explain --mode cluster --world-size 4 --dataset-size 7000": (0, "32 = 8 x 1 x 4", None),
    f"grpolab config diff configs/grpo_cluster.yaml {EXPERIMENT}": (0, "training.learning_rate", "method 2"),
    f"grpolab config set {EXPERIMENT} grpo.beta=0.05": (0, "wrote", "method 2"),
    f"cp configs/grpo_cluster.yaml {EXPERIMENT}": (0, "", None),
    METHOD_2: (0, "", None),
    "grpolab launch slurm --config configs/my_exp.yaml --nodes 2 --gpus-per-node 8 --partition gpu --time "
    "24:00:00 --model Qwen/Qwen2.5-1.5B -o job.sbatch": (0, "wrote ", "my_exp"),
    "grpolab config set configs/grpo_local.yaml training.max_steps=60 training.per_device_train_batch_size=32 "
    "grpo.generation_batch_size=auto generation.max_completion_length=6 data.eval_split=eval "
    "logging.report_to='[none]' -o configs/grpo_local_demo.yaml": (0, "wrote configs/grpo_local_demo.yaml", "no demo"),
}


def doc_commands() -> dict[str, str]:
    """command -> its text to run: one entry per bash line (continuations joined, comments cut)
    and one per python block (`python: FIRST LINE`)."""
    commands = {}
    for doc in DOCS:
        for lang, block in re.findall(r"```(bash|python)\n(.*?)```", doc.read_text(), re.DOTALL):
            if lang == "python":
                commands[f"python: {block.strip().splitlines()[0]}"] = block
                continue
            for line in re.sub(r"\\\n\s*", "", block).splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    commands[" ".join(line.split())] = line
    return commands


def scratch(tmp_path: Path, needs: str | None, env: dict) -> Path:
    """A fresh clone's layout: the tracked configs/ and training/, nothing the user made."""
    copy_tracked("configs", tmp_path)
    copy_tracked("training", tmp_path)
    if needs == "method 2":
        run(doc_commands()[METHOD_2], tmp_path, env, python=True)
    elif needs == "my_exp":  # the user's own config that the command names
        (tmp_path / "configs" / "my_exp.yaml").write_text((tmp_path / "configs" / "grpo_cluster.yaml").read_text())
    elif needs == "no demo":  # the command is how the shipped file was made: make it again
        (tmp_path / "configs" / "grpo_local_demo.yaml").unlink()
    return tmp_path


def run(text: str, cwd: Path, env: dict, python: bool = False) -> subprocess.CompletedProcess:
    if python:
        argv = [sys.executable, "-c", text]
    else:
        argv = shlex.split(text)
        argv[0] = sys.executable if argv[0] == "python" else argv[0]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


@pytest.fixture
def env(subprocess_env) -> dict:
    return dict(subprocess_env, PATH=f"{Path(sys.executable).parent}:{subprocess_env.get('PATH', '')}")


def test_every_command_is_run_or_explained():
    assert set(doc_commands()) == set(EXPECTED) | set(ELSEWHERE)


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_command_runs_as_written(command, tmp_path, env):
    code, fragment, needs = EXPECTED[command]
    folder = scratch(tmp_path, needs, env)
    done = run(doc_commands()[command], folder, env, python=command.startswith("python:"))
    assert done.returncode == code, done.stdout[-2000:] + done.stderr[-2000:]
    assert fragment in done.stdout + done.stderr
    if command == METHOD_2:
        saved = (folder / EXPERIMENT).read_text()
        assert "learning_rate: 1.0e-4  # Changed from 3.0e-5" in saved
    if needs == "no demo":  # the shipped worked-example file is exactly what the documented command makes
        assert (folder / "configs" / "grpo_local_demo.yaml").read_bytes() == (
            REPO_ROOT / "configs" / "grpo_local_demo.yaml"
        ).read_bytes()


def test_the_worked_sweep_writes_the_trials_the_docs_show(tmp_path, env):
    """docs/experiment_loop.md's `grpolab sweep configs/sweeps/demo_lr_beta.yaml --dry-run`, on the
    shipped files (README names both)."""
    folder = scratch(tmp_path, None, env)
    done = run("grpolab sweep configs/sweeps/demo_lr_beta.yaml --dry-run", folder, env)
    assert done.returncode == 0, done.stderr
    doc = (REPO_ROOT / "docs" / "experiment_loop.md").read_text()
    shown = re.search(r"\$ grpolab sweep configs/sweeps/demo_lr_beta.yaml --dry-run\n(.*?)\n\$ ", doc, re.DOTALL)
    assert done.stdout.strip() == shown.group(1).strip()
    trial = (folder / "configs" / "grpo_local_demo_lr2e-4_beta0.1.yaml").read_text()
    assert "  learning_rate: 2.0e-4  # Changed from 5.0e-5" in trial
    for name in ("grpo_local_demo.yaml", "sweeps/demo_lr_beta.yaml"):
        assert f"configs/{name}" in (REPO_ROOT / "README.md").read_text()


def test_scratch_holds_only_tracked_files(tmp_path, env):
    """A user's file in the checkout's configs/ never reaches a test's copy of it."""
    mine = REPO_ROOT / "configs" / f"_user_file_{os.getpid()}.yaml"
    mine.write_text("mode: local\n")
    try:
        folder = scratch(tmp_path, None, env)
        assert not (folder / "configs" / mine.name).exists()
        assert (folder / "configs" / "grpo_local.yaml").is_file()
    finally:
        mine.unlink()


def test_method_2_runs_from_a_script_in_any_folder(tmp_path, env):
    """The spec's Method 2 snippet saved as a script outside the checkout's root (Python puts the
    script's folder on sys.path, not the current one) still imports `configs`: `make venv` puts
    the checkout on the venv's path."""
    copy_tracked("configs", tmp_path)
    script = tmp_path / "experiments" / "method2.py"
    script.parent.mkdir()
    script.write_text(doc_commands()[METHOD_2] + "\n")
    bare = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # as the user runs it
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=bare, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "learning_rate: 1.0e-4  # Changed from 3.0e-5" in (tmp_path / EXPERIMENT).read_text()
