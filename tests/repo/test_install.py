"""`pip install` of the package, outside the checkout: the presets come with it as package data,
no top-level `configs` or `training` package lands in site-packages, and the commands run from
any folder.

Offline and quick: the fresh venv has no pip and no dependencies of its own; a .pth file makes
the test venv's site-packages (pydantic, ruamel.yaml, setuptools, pip, torch ...) visible after
its own. A .pth line adds a folder to sys.path without running the .pth files inside it, so
the editable install of this checkout stays invisible there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(cmd, cwd, env, timeout=300):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("install")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "grpolab", source / "grpolab", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root, None).stdout.strip()
    )
    (site / "zz_test_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    pip = _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--ignore-installed",
            "--no-index",
            str(source),
        ],
        root,
        env,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    work = root / "elsewhere"
    work.mkdir()
    return python, site, env, work


@pytest.mark.slow
def test_installed_package_has_presets_and_no_top_level_configs(installed):
    python, site, env, work = installed
    assert (site / "grpolab" / "presets" / "grpo_cluster.yaml").is_file()
    assert (site / "grpolab" / "presets" / "accelerate" / "zero3.yaml").is_file()
    assert (site / "grpolab" / "config" / "trl_fields.json").is_file()
    assert not (site / "configs").exists() and not (site / "training").exists()
    probe = _run(
        [
            str(python),
            "-c",
            "import grpolab, importlib.util as u; print(grpolab.__file__); "
            "print(u.find_spec('configs'), u.find_spec('training'))",
        ],
        work,
        env,
    )
    assert probe.returncode == 0, probe.stderr
    where, specs = probe.stdout.splitlines()
    assert where == str(site / "grpolab" / "__init__.py")
    assert specs == "None None"


@pytest.mark.slow
def test_installed_config_show_runs_from_any_folder(installed):
    python, site, env, work = installed
    grpolab = python.parent / "grpolab"
    show = _run([str(grpolab), "config", "show", "--mode", "cluster"], work, env)
    assert show.returncode == 0, show.stderr
    assert "mode: cluster" in show.stdout and "output_dir: ./grpo_results_cluster" in show.stdout
    validate = _run(
        [str(grpolab), "config", "validate", str(site / "grpolab" / "presets" / "grpo_local.yaml")], work, env
    )
    assert validate.returncode == 0 and "ok (mode local" in validate.stdout, validate.stderr
    assert list(work.iterdir()) == []


@pytest.mark.slow
def test_installed_train_dry_run(installed, tiny_gpt2):
    pytest.importorskip("torch")
    python, site, env, work = installed
    grpolab = python.parent / "grpolab"
    env = {**env, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    run = _run(
        [
            str(grpolab),
            "train",
            "--dry-run",
            "--model",
            tiny_gpt2,
            "--output-dir",
            str(work / "out"),
            "--set",
            "logging.report_to=[none]",
            "--set",
            "generation.max_completion_length=8",
        ],
        work,
        env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "Traceback" not in run.stderr
    assert sys.executable != str(python)
