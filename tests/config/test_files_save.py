"""save_config: the spec's Method 2, partial files kept partial, comments and markers, and
never overwriting."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import copy_tracked

from grpolab.config import ConfigError, GRPOConfigLoader

REPO = Path(__file__).resolve().parents[2]

CLUSTER = REPO / "configs" / "grpo_cluster.yaml"

# README's example experiments, verbatim.
EXPERIMENT_1 = """\
training:
  learning_rate: 1.0e-5  # Low LR
grpo:
  beta: 0.05  # High KL penalty
"""

# README's "Method 2: programmatic updates", verbatim.
METHOD_2 = """\
from configs.grpo_config import GRPOConfigLoader

# Load config
loader = GRPOConfigLoader(mode="cluster")

# Update parameters
loader.update_param("training.learning_rate", 1e-4)
loader.update_param("grpo.beta", 0.05)

# Save as new config
loader.save_config("configs/grpo_cluster_experiment1.yaml")
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def comment_lines(text: str) -> list[str]:
    """Every comment in a YAML text, from its `#` to the end of the line, without save marks."""
    comments = [line[line.index("#") :].rstrip() for line in text.splitlines() if "#" in line]
    comments = [re.sub(r"^# Changed from .*?(  (?=#)|$)", "", c) for c in comments]
    return [c for c in comments if c]


# ----------------------------------------------------------------------------- save_config
def test_seed_method_2_runs_verbatim(tmp_path):
    """README's Method 2 snippet, from a copy of the repo root, saves a valid file that keeps the
    preset's comments; the real configs/ folder is never written."""
    real_before = sorted(p.name for p in (REPO / "configs").iterdir())
    root = tmp_path / "repo"
    copy_tracked("configs", root)  # the shipped files only, never the user's own configs
    shutil.copytree(REPO / "grpolab", root / "grpolab", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = "import grpolab, configs; print(grpolab.__file__); print(configs.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", check], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert where.stdout.splitlines() == [
        str(root / "grpolab" / "__init__.py"),
        str(root / "configs" / "__init__.py"),
    ], where
    proc = subprocess.run(
        [sys.executable, "-c", METHOD_2], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr

    saved = root / "configs" / "grpo_cluster_experiment1.yaml"
    text = saved.read_text()
    assert "  learning_rate: 1.0e-4  # Changed from 3.0e-5  # peak learning rate (TRL default 1e-6)\n" in text
    assert "  beta: 0.05  # Changed from 0.01  # KL penalty coefficient; 0 = no reference model, no KL\n" in text
    assert "# Training Hyperparameters\n" in text and "# GRPO Specific Parameters\n" in text
    preset = CLUSTER.read_text()
    assert comment_lines(text) == comment_lines(preset)
    assert text.splitlines()[:3] == preset.splitlines()[:3]
    assert len(text.splitlines()) == len(preset.splitlines())  # two lines edited in place, nothing else

    validate = subprocess.run(
        [sys.executable, "-m", "grpolab.cli.main", "config", "validate", "configs/grpo_cluster_experiment1.yaml"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validate.returncode == 0, validate.stderr
    assert "ok (mode cluster" in validate.stdout
    loaded = GRPOConfigLoader(config_path=saved)
    assert loaded.get_param("training.learning_rate") == 1e-4 and loaded.get_param("grpo.beta") == 0.05

    again = subprocess.run(
        [sys.executable, "-c", METHOD_2], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    assert saved.read_text() == text
    assert sorted(p.name for p in (REPO / "configs").iterdir()) == real_before


def test_save_refuses_to_overwrite_and_leaves_file_identical(tmp_path):
    target = tmp_path / "exp.yaml"
    original = b"# mine\ngrpo:\n  beta: 0.02  # keep me\n"
    target.write_bytes(original)
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_param("grpo.beta", 0.05)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        loader.save_config(target)
    assert target.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]  # no temp file left
    own = GRPOConfigLoader(config_path=target)  # saving over its own source needs overwrite too
    own.update_param("grpo.beta", 0.03)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        own.save_config(target)
    assert target.read_bytes() == original
    loader.save_config(target, overwrite=True)
    assert GRPOConfigLoader(config_path=target).get_param("grpo.beta") == 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


def test_save_to_a_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        GRPOConfigLoader().save_config(tmp_path)


def test_save_partial_file_keeps_it_partial(tmp_path):
    path = write(tmp_path, "# Experiment 1: Conservative Training\n" + EXPERIMENT_1 + "\n# Outcome: stable\n")
    loader = GRPOConfigLoader(config_path=path)
    loader.update_params({"grpo.beta": 0.02, "generation.temperature": 0.7, "grpo.epsilon_high": 0.28})
    out = loader.save_config(tmp_path / "out.yaml")
    text = out.read_text()
    assert text == (
        "# Experiment 1: Conservative Training\n"
        "training:\n"
        "  learning_rate: 1.0e-5  # Low LR\n"
        "grpo:\n"
        "  beta: 0.02  # Changed from 0.05  # High KL penalty\n"
        "  epsilon_high: 0.28  # Changed from null\n"
        "generation:\n"
        "  temperature: 0.7  # Changed from 1.0\n"
        "\n"
        "# Outcome: stable\n"
    )
    assert GRPOConfigLoader(config_path=out).to_dict() == loader.to_dict()


def test_save_new_key_keeps_the_next_sections_header_below(tmp_path):
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_params({"grpo.epsilon_high": 0.28, "training.weight_decay": 0.1})
    text = loader.save_config(tmp_path / "x.yaml").read_text()
    assert (
        "  scale_rewards: group  # advantage scaling: group, batch or none\n"
        "  epsilon_high: 0.28  # Changed from null\n"
        "\n"
        "# Sampling of completions\n"
        "generation:\n"
    ) in text
    assert "  weight_decay: 0.1  # Changed from 0.0\n\n# GRPO Specific Parameters\ngrpo:\n" in text


def test_save_mapping_update_marks_each_changed_key(tmp_path):
    loader = GRPOConfigLoader(mode="local")
    loader.update_param("model.lora", {"enabled": True, "r": 8})
    text = loader.save_config(tmp_path / "x.yaml").read_text()
    assert "    enabled: true  # Changed from false  # train a LoRA adapter (peft) instead of all weights\n" in text
    assert "    r: 8  # Changed from 16  # adapter rank\n" in text
    assert "    alpha: 32  # scaling" in text
    assert "\n\n# Data\ndata:\n" in text
    assert GRPOConfigLoader(config_path=tmp_path / "x.yaml").to_dict() == loader.to_dict()


def test_save_list_replacement_keeps_following_header(tmp_path):
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_param("rewards", [{"name": "numeric_match", "weight": 1.0}, {"name": "format", "weight": 0.2}])
    text = loader.save_config(tmp_path / "x.yaml").read_text()
    assert "\n\n# Training Hyperparameters\ntraining:\n" in text
    assert GRPOConfigLoader(config_path=tmp_path / "x.yaml").get_param("rewards[1].weight") == 0.2


def test_save_with_set_and_flags(tmp_path):
    loader = GRPOConfigLoader(mode="cluster", overrides=["grpo.beta=0.04"], flags={"model.name_or_path": "gpt2"})
    text = loader.save_config(tmp_path / "x.yaml").read_text()
    assert "beta: 0.04  # Changed from 0.01" in text
    assert "name_or_path: gpt2  # Changed from null" in text
    assert GRPOConfigLoader(config_path=tmp_path / "x.yaml").to_dict() == loader.to_dict()


def test_value_set_back_is_not_marked(tmp_path):
    loader = GRPOConfigLoader(mode="cluster")
    loader.update_param("grpo.beta", 0.05)
    loader.update_param("grpo.beta", 0.01)
    assert loader.render() == CLUSTER.read_text()


def test_saved_file_is_readable_by_others(tmp_path):
    path = GRPOConfigLoader().save_config(tmp_path / "x.yaml")
    mode = path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_trust_remote_code_reaches_trl_from_the_model_section_only():
    from grpolab.config import ConfigError, GRPOConfigLoader

    loader = GRPOConfigLoader(overrides=["model.trust_remote_code=true"])
    assert loader.trl_kwargs(world_size=1)["trust_remote_code"] is True
    assert GRPOConfigLoader().trl_kwargs(world_size=1)["trust_remote_code"] is False
    with pytest.raises(ConfigError) as err:
        GRPOConfigLoader(overrides=["grpo.trust_remote_code=true"])
    assert "is set through `model.trust_remote_code`" in str(err.value)
