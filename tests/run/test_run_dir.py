"""The run directory: the seed's command line end to end, what each record holds, naming,
--dry-run, LoRA, and `grpolab train` behaving like `python training/grpo_training.py`."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

from conftest import PYTHON, REPO_ROOT, build_tiny_model

from grpolab.config import GRPOConfigLoader
from grpolab.config.yaml_io import read_yaml_file, to_plain
from grpolab.run.run_dir import create_run_dir

TIMESTAMP = r"\d{8}-\d{6}"


def _load_yaml(path: Path):
    tree = read_yaml_file(path)
    return to_plain(tree, str(path), tree)


def _assert_loads(model_dir: Path, lora_free: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer("12+34=")["input_ids"]
    if lora_free:
        assert not any("lora" in name for name, _ in model.named_parameters())
    return model


def test_seed_command_line_leaves_a_complete_run_directory(tmp_path, subprocess_env, jsonl):
    """`python training/grpo_training.py --model <local tiny model> --set training.max_steps=3`,
    as a real process, offline, with the local preset's defaults (8 generations of 64 tokens,
    KL on, WandB offline). GPT-2 style, no chat template; context 128 so 64-token completions fit."""
    model_dir = build_tiny_model(tmp_path / "tiny-gpt2", "gpt2", context=128)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [
            PYTHON,
            str(REPO_ROOT / "training" / "grpo_training.py"),
            "--model",
            str(model_dir),
            "--set",
            "training.max_steps=3",
        ],
        cwd=work,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list((work / "grpo_results_local").iterdir())  # the preset's output_dir, relative to the cwd
    assert len(runs) == 1
    run_dir = runs[0]
    assert re.fullmatch(rf"grpo_local_{TIMESTAMP}", run_dir.name)
    assert f"run finished: grpo_results_local/{run_dir.name}" in proc.stdout

    # resolved_config.yaml: every value, defaults included, itself a valid config.
    resolved = _load_yaml(run_dir / "resolved_config.yaml")
    assert resolved["training"]["max_steps"] == 3
    assert resolved["model"]["name_or_path"] == str(model_dir)
    assert resolved["training"]["lr_scheduler_type"] == "linear"  # a schema default, not in the preset
    assert resolved["generation"]["top_p"] == 1.0
    reloaded = GRPOConfigLoader(config_path=run_dir / "resolved_config.yaml")
    assert reloaded.to_dict() == resolved
    assert (
        GRPOConfigLoader(
            mode="local", overrides=["training.max_steps=3"], flags={"model.name_or_path": str(model_dir)}
        ).to_dict()
        == resolved
    )

    # overrides.yaml: exactly what --set and flags changed.
    assert _load_yaml(run_dir / "overrides.yaml") == {"training.max_steps": 3, "model.name_or_path": str(model_dir)}

    # run_info.json
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["status"] == "finished" and info["exit_code"] == 0 and info["error"] is None
    assert info["run_name"] == run_dir.name
    assert re.fullmatch(r"[0-9a-f]{40}", info["git"]["commit"]) and isinstance(info["git"]["dirty"], bool)
    for name in ("trl", "transformers", "torch", "accelerate", "datasets", "peft", "wandb"):
        assert info["packages"][name] == metadata.version(name)
    assert info["host"]["hostname"] and info["host"]["python"]
    assert info["world_size"] == 1 and info["device"] == "cpu"
    assert info["effective_batch_size"] == 1 * 1 * 1  # per_device_train_batch_size x GA x world size (local preset)
    assert info["config_sha256"] == hashlib.sha256((run_dir / "resolved_config.yaml").read_bytes()).hexdigest()
    assert info["started"] <= info["ended"]
    assert info["global_step"] == 3

    # metrics.jsonl: one record per logged step (logging_steps 1), then the trainer's end-of-run record.
    records = jsonl(run_dir / "metrics.jsonl")
    step_records = [r for r in records if "loss" in r]
    assert [r["step"] for r in step_records] == [1, 2, 3]
    assert all("reward" in r and "kl" in r for r in step_records if "num_tokens" in r)
    assert "train_runtime" in records[-1]

    # summary.json: final and best metrics.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == 3
    assert summary["final"]["loss"] == step_records[-1]["loss"]
    assert summary["best"]["loss"] == min(r["loss"] for r in step_records)
    assert "reward" in summary["final"] and "reward" in summary["best"]

    assert (run_dir / "checkpoint-3").is_dir()
    _assert_loads(run_dir / "model")
    assert (run_dir / "wandb").is_dir()  # report_to [wandb] in the preset, offline here


def test_config_stem_names_the_run_and_overrides_are_recorded(tiny_gpt2, fast_config, train):
    cfg = fast_config(tiny_gpt2, name="grpo_cluster_high_lr.yaml")
    result = train("--config", cfg, "--set", "training.learning_rate=1e-4", "--set", "grpo.beta=0.0")
    assert result.code == 0, result
    assert re.fullmatch(rf"grpo_cluster_high_lr_{TIMESTAMP}", result.run_dir.name)
    assert result.run_dir.parent == cfg.parent / "runs"
    assert _load_yaml(result.run_dir / "overrides.yaml") == {"training.learning_rate": 1e-4, "grpo.beta": 0.0}
    info = json.loads((result.run_dir / "run_info.json").read_text())
    assert info["config_file"] == str(cfg)
    assert info["git"]["config_diff"].startswith("untracked")  # the config is not in a repository
    assert _load_yaml(result.run_dir / "resolved_config.yaml")["training"]["learning_rate"] == 1e-4


def test_run_name_and_runs_never_share_a_directory(tiny_gpt2, fast_config, train):
    cfg = fast_config(tiny_gpt2, {"training": {"max_steps": 1}})
    first = train("--config", cfg, "--run-name", "my_run")
    second = train("--config", cfg, "--run-name", "my_run")
    assert first.code == second.code == 0, (first, second)
    assert first.run_dir.name == "my_run" and second.run_dir.name == "my_run-2"
    for result in (first, second):
        info = json.loads((result.run_dir / "run_info.json").read_text())
        assert info["run_name"] == result.run_dir.name and info["status"] == "finished"
        assert len([r for r in (result.run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in r]) == 1
    third = train("--config", cfg)
    fourth = train("--config", cfg)
    assert third.run_dir != fourth.run_dir and third.run_dir.name.startswith("fast_")


def test_create_run_dir_is_unique_within_the_same_second(tmp_path):
    made = [create_run_dir(str(tmp_path), "grpo_local") for _ in range(5)]
    assert len(set(made)) == 5 and all(p.is_dir() for p in made)
    base = made[0].name
    assert re.fullmatch(rf"grpo_local_{TIMESTAMP}", base)
    assert create_run_dir(str(tmp_path), "x", "named") == tmp_path / "named"
    assert create_run_dir(str(tmp_path), "x", "named") == tmp_path / "named-2"


def test_dry_run_validates_and_creates_nothing(tiny_gpt2, tmp_path, fast_config, train):
    cfg = fast_config(tiny_gpt2)
    result = train("--config", cfg, "--dry-run")
    assert result.code == 0, result
    for line in (
        "config ",
        "model        " + tiny_gpt2,
        "data         builtin:addition [train]: 8 prompts",
        "rewards      numeric_match x1",
        "batch        effective 2",
        "steps        2 optimizer steps",
    ):
        assert line in result.out
    assert "dry run:" in result.out
    assert not (tmp_path / "runs").exists()

    # Each check it makes: reward imports, the model, the columns.
    bad_reward = train("--config", fast_config(tiny_gpt2, {"rewards": [{"name": "no_such_mod_dry:f"}]}), "--dry-run")
    assert bad_reward.code == 2 and "no_such_mod_dry:f" in bad_reward.err
    bad_model = train("--config", cfg, "--model", str(tmp_path / "nothing-here"), "--dry-run")
    assert bad_model.code == 2 and "nothing-here" in bad_model.err
    assert not (tmp_path / "runs").exists()


def test_lora_trains_an_adapter_and_saves_a_merged_model(tiny_gpt2, fast_config, train):
    cfg = fast_config(tiny_gpt2, {"model": {"lora": {"enabled": True, "r": 4, "alpha": 8}}})
    result = train("--config", cfg)
    assert result.code == 0, result
    assert "+ LoRA r=4" in result.out
    adapter = json.loads((result.run_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    _assert_loads(result.run_dir / "model", lora_free=True)
    assert (result.run_dir / "checkpoint-2" / "adapter_model.safetensors").exists()


def test_grpolab_train_has_the_same_options_and_runs(tiny_gpt2, fast_config, capsys):
    import importlib.util

    from grpolab.cli.main import build_parser, main

    spec = importlib.util.spec_from_file_location("grpo_training_script", REPO_ROOT / "training" / "grpo_training.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def options(parser: argparse.ArgumentParser) -> set[str]:
        return {opt for action in parser._actions for opt in action.option_strings}

    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    script_parser = argparse.ArgumentParser()
    from grpolab.train.request import TrainRequest

    TrainRequest.add_arguments(script_parser)
    expected = {
        "--model",
        "--mode",
        "--config",
        "--set",
        "--output-dir",
        "--run-name",
        "--dry-run",
        "--resume",
        "--force",
    }
    assert expected <= options(train_parser) == options(script_parser)

    cfg = fast_config(tiny_gpt2, {"training": {"max_steps": 1}})
    assert main(["train", "--config", str(cfg), "--run-name", "via_cli"]) == 0
    assert script.main(["--config", str(cfg), "--run-name", "via_script"]) == 0
    out = capsys.readouterr().out
    for name in ("via_cli", "via_script"):
        run_dir = cfg.parent / "runs" / name
        assert f"run finished: {run_dir}" in out
        assert json.loads((run_dir / "run_info.json").read_text())["global_step"] == 1
    assert main(["train", "--config", str(cfg), "--set", "training.max_steps=0x", "--dry-run"]) == 2
