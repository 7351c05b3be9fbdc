"""config scale: the local preset (and the demo preset) rewritten for 2, 4 and 8 processes validates for
that world size and keeps the unique prompts per step; checked without GPUs through world-size
validation."""

from __future__ import annotations

import subprocess

import pytest
from conftest import PYTHON, REPO_ROOT, child_env

from grpolab.config import ConfigError, GRPOConfigLoader, preset_path
from grpolab.config.derive import derive
from grpolab.tune import scale


@pytest.mark.parametrize("gpus", [2, 4, 8])
def test_local_preset_scales_and_keeps_prompts_per_step(gpus, tmp_path):
    source = preset_path("local")
    before = derive(GRPOConfigLoader(config_path=source).config, 1)
    loader, reasons, rows, notes = scale.scale_config(source, gpus)
    text = scale.scaled_text(loader, reasons, rows, source, gpus, 0)
    path = scale.write(text, tmp_path / f"local_{gpus}.yaml", False, gpus)
    written = GRPOConfigLoader(config_path=path, world_size=gpus)
    assert written.config.mode == "cluster" and written.target_world_size() == gpus
    after = derive(written.config, gpus)
    assert after.unique_prompts_per_round == before.unique_prompts_per_round
    assert after.generation_batch_size == before.generation_batch_size
    # everything the run does apart from the batch layout stays as it was in the local file
    old, new = GRPOConfigLoader(config_path=source).to_dict(), written.to_dict()
    for section in ("generation", "model", "data", "rewards"):
        assert old[section] == new[section]
    assert old["training"]["learning_rate"] == new["training"]["learning_rate"]
    assert old["training"]["gradient_checkpointing"] == new["training"]["gradient_checkpointing"]
    assert "mode: cluster  # Changed from local:" in path.read_text()


@pytest.mark.parametrize("gpus", [2, 4, 8])
def test_demo_preset_keeps_prompts_effective_batch_and_on_policy(gpus):
    source = preset_path("local").with_name("grpo_demo.yaml")
    before = derive(GRPOConfigLoader(config_path=source).config, 1)
    loader, _, rows, _ = scale.scale_config(source, gpus)
    after = derive(GRPOConfigLoader.from_dict(loader.to_dict(), world_size=gpus).config, gpus)
    for key in ("unique_prompts_per_round", "effective_batch_size", "generation_batch_size", "on_policy"):
        assert getattr(after, key) == getattr(before, key), key
    assert loader.config.training.per_device_train_batch_size == 64 // gpus
    table = scale.render_table(rows)
    assert "(changed)" in table and "unique prompts per round" in table


def test_a_pinned_round_that_cannot_divide_moves_to_the_nearest_valid_one(write_config):
    path = write_config(
        {
            "mode": "cluster",
            "training": {"per_device_train_batch_size": 4},
            "grpo": {"generation_batch_size": 24, "num_generations": 6},
            "cluster": {"num_processes": 1},
        }
    )
    loader, _, _, _ = scale.scale_config(path, 8)
    cfg = loader.config
    d = derive(cfg, 8)
    assert d.generation_batch_size % (cfg.training.per_device_train_batch_size * 8) == 0
    assert d.generation_batch_size % 6 == 0
    GRPOConfigLoader.from_dict(loader.to_dict(), world_size=8)


def test_vllm_gpus_reserve_a_server(write_config):
    path = write_config(
        {"mode": "cluster", "training": {"per_device_train_batch_size": 8}, "cluster": {"num_processes": 4}}
    )
    loader, _, _, notes = scale.scale_config(path, 8, vllm_gpus=2)
    cfg = loader.config
    assert cfg.cluster.num_processes == 6 and cfg.cluster.use_vllm is True and cfg.cluster.vllm_mode == "server"
    assert "CUDA_VISIBLE_DEVICES=6,7" in notes[0]
    with pytest.raises(ConfigError, match="leaves no GPU for training"):
        scale.scale_config(path, 2, vllm_gpus=2)


def test_a_cluster_file_with_auto_processes_needs_its_world_size(tmp_path):
    cluster = preset_path("cluster")
    with pytest.raises(ConfigError, match="--from-world-size"):
        scale.scale_config(cluster, 16)
    loader, _, _, _ = scale.scale_config(cluster, 16, from_world=8)
    before = derive(GRPOConfigLoader(config_path=cluster, world_size=8).config, 8)
    after = derive(GRPOConfigLoader.from_dict(loader.to_dict(), world_size=16).config, 16)
    assert (after.unique_prompts_per_round, after.effective_batch_size) == (
        before.unique_prompts_per_round,
        before.effective_batch_size,
    )


def _grpolab(*args):
    return subprocess.run(
        [PYTHON, "-m", "grpolab", *map(str, args)],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_config_scale_writes_validates_and_never_overwrites(tmp_path):
    out = tmp_path / "local_4.yaml"
    done = _grpolab("config", "scale", preset_path("local"), "--gpus", "4", "-o", out)
    assert done.returncode == 0, done.stderr
    assert "unique prompts per round" in done.stdout and "valid for 4 training processes" in done.stdout
    check = _grpolab("config", "validate", out, "--world-size", "4")
    assert check.returncode == 0, check.stderr
    again = _grpolab("config", "scale", preset_path("local"), "--gpus", "4", "-o", out)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr and "Traceback" not in again.stderr
    printed = _grpolab("config", "scale", preset_path("local"), "--gpus", "2")
    assert printed.returncode == 0 and "num_processes: 2" in printed.stdout
    bad = _grpolab("config", "scale", tmp_path / "missing.yaml", "--gpus", "2")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.parametrize("name", ["local", "demo"])
@pytest.mark.parametrize("gpus", range(1, 10))
def test_scale_never_claims_to_keep_what_its_table_shows_changing(name, gpus):
    """Issue 21 section 8: every changed batch key said "keeps the step's prompts and batch" while
    the table beside it showed the effective batch and the prompts per round changing."""
    loader, reasons, rows, _ = scale.scale_config(preset_path(name), gpus)
    table = {label: (a, b) for label, a, b in rows}
    changed = [label for label in ("effective batch size", "unique prompts per round") if len(set(table[label])) > 1]
    claims = [text for text in reasons.values() if text.startswith("keeps the step's prompts and batch")]
    assert not (claims and changed), f"{gpus} GPUs: claims {claims} while {changed} change"
    for text in reasons.values():
        if text.startswith("the nearest fit"):
            assert all(f"{a} -> {b}" in text for label, (a, b) in table.items() if label in changed and a != b)
