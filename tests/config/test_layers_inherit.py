"""`base:` chains, `${...}` references, and the commands that make small config files:
config new, minimize, ls, cp, keys, explain --key, show --origins. Every bad input exits 2 with
one message and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader, preset_path
from grpolab.config.files import minimize, new_config
from grpolab.config.yaml_io import read_yaml_file, to_plain

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def chain(tmp_path):
    """top.yaml -> ../mid.yaml -> root.yaml -> preset:grpo_cluster (three files over the preset)."""
    write(tmp_path / "root.yaml", "base: preset:grpo_cluster\ntraining:\n  learning_rate: 1.0e-4\n  seed: 7\n")
    write(tmp_path / "mid.yaml", "base: root.yaml\ntraining:\n  seed: 8  # mid's seed\ngrpo:\n  beta: 0.02\n")
    return write(tmp_path / "sub" / "top.yaml", "base: ../mid.yaml\ngrpo:\n  beta: 0.05  # top\n")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- base:
def test_three_level_chain_resolves_with_origins_per_file(chain, tmp_path):
    loader = GRPOConfigLoader(config_path=chain)
    assert loader.mode == "cluster"
    assert loader.get_param("grpo.beta") == 0.05 and loader.origin_of("grpo.beta") == f"{chain}:3"
    assert loader.get_param("training.seed") == 8 and loader.origin_of("training.seed") == f"{tmp_path}/mid.yaml:3"
    assert loader.get_param("training.learning_rate") == 1e-4
    assert loader.origin_of("training.learning_rate") == f"{tmp_path}/root.yaml:3"
    assert loader.origin_of("training.per_device_train_batch_size").startswith("preset grpo_cluster.yaml:")
    assert loader.origin_of("training.weight_decay") == "default"
    assert loader.base_chain == [f"{tmp_path}/mid.yaml", f"{tmp_path}/root.yaml"]
    assert "base" not in loader.to_dict()


def test_save_keeps_base_and_only_its_own_keys(chain, tmp_path):
    loader = GRPOConfigLoader(config_path=chain)
    loader.update_param("grpo.num_generations", 4)
    out = tmp_path / "elsewhere" / "deeper" / "saved.yaml"
    loader.save_config(out)
    text = out.read_text()
    assert text.startswith("base: ../../mid.yaml\n")  # still points at mid.yaml from its new folder
    assert "  beta: 0.05  # top\n" in text and "  num_generations: 4  # Changed from 8\n" in text
    assert "learning_rate" not in text
    assert GRPOConfigLoader(config_path=out).to_dict() == loader.to_dict()


def test_save_full_writes_one_flat_file(chain, tmp_path):
    loader = GRPOConfigLoader(config_path=chain)
    out = loader.save_config(tmp_path / "full.yaml", full=True)
    data = to_plain(read_yaml_file(out), str(out))
    assert "base" not in data and data["training"]["learning_rate"] == 1e-4
    assert "# GRPO Specific Parameters" in out.read_text()  # the preset's comments
    again = GRPOConfigLoader(config_path=out)
    assert again.to_dict() == loader.to_dict() and again.base_chain == []


def test_config_set_edits_a_file_with_base(chain, capsys):
    code, out, err = run(capsys, "config", "set", str(chain), "training.seed=9")
    assert code == 0, err
    text = chain.read_text()
    assert text.startswith("base: ../mid.yaml\n") and "  seed: 9  # Changed from 8\n" in text


def test_a_base_may_be_a_preset_path_or_a_configs_link(tmp_path):
    path = write(tmp_path / "c.yaml", f"base: {preset_path('cluster')}\n")
    assert GRPOConfigLoader(config_path=path).mode == "cluster"
    path = write(REPO / "configs" / f"_test_inherit_{os.getpid()}.yaml", "base: grpo_cluster.yaml\n")
    try:
        loader = GRPOConfigLoader(config_path=path)
        assert loader.origin_of("grpo.beta").startswith("preset grpo_cluster.yaml:")  # the preset, not twice
    finally:
        path.unlink()


@pytest.mark.parametrize(
    "files, fragment",
    [
        ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, "the base chain loops: "),
        ({"a.yaml": "base: a.yaml\n"}, "the base chain loops: "),
        ({"a.yaml": "base: sub\n", "sub/x.yaml": "mode: local\n"}, "is a directory"),
        ({"a.yaml": "base: notes.txt\n", "notes.txt": "hello\n"}, "is not a YAML config file"),
        ({"a.yaml": "base: nope.yaml\n"}, "`nope.yaml` not found"),
        ({"a.yaml": "base: b.yaml\n", "b.yaml": "training:\n  lerning_rate: 1\n"}, "b.yaml:2: training.lerning_rate"),
        ({"a.yaml": "base: b.yaml\n", "b.yaml": "training: [\n"}, "(base chain: "),
        ({"a.yaml": "mode: local\nbase: b.yaml\n", "b.yaml": "mode: cluster\n"}, "has mode `cluster`"),
        ({"a.yaml": "base: 3\n"}, "must be a path to a config file"),
    ],
)
def test_bad_bases_exit_2_with_one_message(files, fragment, tmp_path, capsys):
    for name, text in files.items():
        write(tmp_path / name, text)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(config_path=tmp_path / "a.yaml")
    assert len(info.value.problems) == 1 and fragment in str(info.value)
    code, out, err = run(capsys, "config", "validate", str(tmp_path / "a.yaml"))
    assert code == 2 and out == "" and fragment in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


# ----------------------------------------------------------------------------- references
def test_references_keep_types_and_fill_strings(tmp_path, monkeypatch):
    monkeypatch.setenv("GRPOLAB_TEST_LR", "2e-4")
    path = write(
        tmp_path / "r.yaml",
        "training:\n  learning_rate: ${env:GRPOLAB_TEST_LR}\n  weight_decay: ${env:GRPOLAB_TEST_NONE,0.01}\n"
        "grpo:\n  beta: ${training.weight_decay}\n"
        'logging:\n  project: "lr_${training.learning_rate}_${env:GRPOLAB_TEST_NONE,x}"\n'
        "  tags: [\"${rewards[0].name}\", '${data.split}']\n",
    )
    loader = GRPOConfigLoader(config_path=path)
    assert loader.get_param("training.learning_rate") == 2e-4  # a whole-scalar env value is read as YAML
    assert loader.get_param("grpo.beta") == 0.01
    assert loader.get_param("logging.project") == "lr_2.0e-4_x"
    assert loader.get_param("logging.tags") == ["numeric_match", "train"]
    loader.update_param("generation.temperature", 0.9)
    saved = loader.save_config(tmp_path / "saved.yaml")
    assert "${env:GRPOLAB_TEST_LR}" in saved.read_text()  # references stay references in the file


def test_reference_to_a_default_and_a_type_error_names_the_key(tmp_path):
    ok = write(tmp_path / "ok.yaml", "generation:\n  top_k: ${training.seed}\n")
    assert GRPOConfigLoader(config_path=ok).get_param("generation.top_k") == 42  # the schema default
    bad = write(tmp_path / "bad.yaml", "generation:\n  top_k: ${logging.project}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: generation.top_k: Input should be a valid integer"):
        GRPOConfigLoader(config_path=bad)


def test_a_dollar_without_braces_is_plain_text(tmp_path):
    path = write(tmp_path / "p.yaml", "logging:\n  project: cost_$5\n")
    assert GRPOConfigLoader(config_path=path).get_param("logging.project") == "cost_$5"


# ----------------------------------------------------------------------------- new / minimize
def test_config_new_writes_base_and_changed_keys_then_dry_run_sees_them(chain, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(
        capsys, "config", "new", "exp_lr", "--from", str(chain), "--set", "training.learning_rate=3e-4"
    )
    assert code == 0, err
    path = tmp_path / "configs" / "exp_lr.yaml"
    text = path.read_text()
    assert "# yaml-language-server: $schema=" in text and "made by `grpolab config new`" in text
    assert "base: ../sub/top.yaml\n" in text and "  learning_rate: 3.0e-4  # Changed from 1.0e-4\n" in text
    data = to_plain(read_yaml_file(path), str(path))
    assert data == {"base": "../sub/top.yaml", "training": {"learning_rate": 3e-4}}
    loader = GRPOConfigLoader(config_path="configs/exp_lr.yaml")
    assert loader.get_param("grpo.beta") == 0.05 and loader.origin_of("grpo.beta") == "sub/top.yaml:3"
    assert loader.origin_of("training.learning_rate") == "configs/exp_lr.yaml:7"
    code, _, err = run(capsys, "config", "new", "exp_lr", "--from", str(chain))
    assert code == 2 and "refusing to overwrite" in err


@pytest.mark.slow
def test_config_new_on_a_chain_then_train_dry_run(chain, tmp_path, tiny_gpt2, subprocess_env):
    path, text = new_config(str(tmp_path / "n.yaml"), str(chain), ["generation.max_completion_length=8"])
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "grpolab", "train", "--dry-run", "--config", str(path), "--model", tiny_gpt2,
         "--output-dir", str(tmp_path / "out"), "--set", "logging.report_to=[none]", "--set", "cluster.device=cpu",
         "--set", "cluster.num_processes=1"],
        cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_config_new_from_a_mode_in_a_checkout_names_the_configs_link(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    path, text = new_config(str(tmp_path / "x.yaml"), "cluster", ["grpo.beta=0.02"])
    assert "base: preset:grpo_cluster\n" in text  # tmp_path is far from the presets
    path, text = new_config(f"_never_written_{os.getpid()}", "cluster", ["grpo.beta=0.02"])
    assert path == Path("configs") / f"_never_written_{os.getpid()}.yaml" and not path.exists()
    assert "base: grpo_cluster.yaml\n" in text and "  beta: 0.02  # Changed from 0.01\n" in text


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["exp", "--from", "clustr"], "`clustr` is not a mode, a preset or an existing file. Did you mean `cluster`?"),
        (["exp", "--from", "cluster", "--set", "grpo.bta=1"], "Did you mean `beta`?"),
        (["exp", "--from", "cluster", "--set", "grpo.num_generations=1"], "greater than or equal to 2"),
        (["exp", "--from", "cluster", "--set", "nokey"], "is not of the form KEY=VALUE"),
        (["bad name", "--from", "cluster"], "is not a usable config name"),
    ],
)
def test_config_new_bad_input_writes_nothing(argv, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "config", "new", *argv)
    assert code == 2 and out == "" and fragment in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_minimize_a_copied_preset_keeps_only_the_changes(tmp_path, capsys):
    full = tmp_path / "full.yaml"
    assert run(capsys, "config", "cp", "cluster", str(full))[0] == 0
    assert run(capsys, "config", "set", str(full), "training.learning_rate=1e-4", "grpo.beta=0.05")[0] == 0
    out = tmp_path / "mini.yaml"
    code, _, err = run(capsys, "config", "minimize", str(full), "-o", str(out))
    assert code == 0, err
    data = to_plain(read_yaml_file(out), str(out))
    assert data == {"base": "preset:grpo_cluster", "training": {"learning_rate": 1e-4}, "grpo": {"beta": 0.05}}
    assert "  beta: 0.05  # Changed from 0.01  # KL penalty coefficient; 0 = no reference model, no KL\n" in (
        out.read_text()
    )  # the comment is kept
    assert GRPOConfigLoader(config_path=out).to_dict() == GRPOConfigLoader(config_path=full).to_dict()
    assert run(capsys, "config", "minimize", str(full), "-o", str(out))[0] == 2  # never overwrites -o


def test_minimize_keeps_references_lists_and_rewrites_in_place(tmp_path):
    path = write(
        tmp_path / "f.yaml",
        "mode: local\ntraining:\n  learning_rate: 5.0e-5\n  seed: ${env:GRPOLAB_TEST_NONE,3}\n"
        "rewards:\n  - name: format\n    weight: 0.5\n",
    )
    out, text = minimize(path)
    assert out == path
    tree = to_plain(read_yaml_file(write(tmp_path / "m.yaml", text)), "m")
    assert tree["training"] == {"seed": "${env:GRPOLAB_TEST_NONE,3}"}  # 5e-5 is the local preset's
    assert tree["rewards"] == [{"name": "format", "weight": 0.5}]


# ----------------------------------------------------------------------------- ls / cp
def test_ls_lists_presets_with_descriptions(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "config", "ls")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert {"grpo_local", "grpo_cluster", "grpo_demo", "accelerate/zero3", "sweeps/example_sweep"} <= set(lines)
    assert "multi-GPU cluster training" in lines["grpo_cluster"] and "preset" in lines["grpo_cluster"]


def test_cp_copies_with_a_header_and_refuses_to_overwrite(tmp_path, capsys):
    code, out, err = run(capsys, "config", "cp", "grpo_cluster", str(tmp_path))
    assert code == 0, err
    copied = tmp_path / "grpo_cluster.yaml"
    text = copied.read_text()
    assert text.startswith("# Copied from the grpolab preset grpo_cluster by `grpolab config cp`")
    assert f"$schema={preset_path('cluster').parent}/grpolab.schema.json" in text
    assert to_plain(read_yaml_file(copied), "c") == to_plain(read_yaml_file(preset_path("cluster")), "p")
    copied.write_text("mine\n")
    code, out, err = run(capsys, "config", "cp", "grpo_cluster", str(copied))
    assert code == 2 and "refusing to overwrite" in err and copied.read_text() == "mine\n"
    code, out, err = run(capsys, "config", "cp", "grpo_clustr", str(tmp_path / "y.yaml"))
    assert code == 2 and "Did you mean `grpo_cluster`?" in err and not (tmp_path / "y.yaml").exists()


# ----------------------------------------------------------------------------- keys / explain --key / origins
def test_keys_filters_by_word_and_initials(capsys):
    code, out, _ = run(capsys, "config", "keys", "lr")
    keys = [line.split()[0] for line in out.splitlines()]
    assert code == 0 and "training.learning_rate" in keys and "training.lr_scheduler_type" in keys
    code, out, _ = run(capsys, "config", "keys", "kl")
    assert "grpo.beta" in out.split()
    code, out, _ = run(capsys, "config", "keys", "vllm")
    keys = [line.split()[0] for line in out.splitlines()]
    assert "cluster.use_vllm" in keys and "grpo.vllm_mode" not in keys  # set through cluster.vllm_mode
    code, out, _ = run(capsys, "config", "keys")
    assert "grpo.epsilon_high" in out and "rewards[].weight" in out and len(out.splitlines()) > 150
    code, out, err = run(capsys, "config", "keys", "zzzqqq")
    assert code == 2 and "no key matches" in err


def test_explain_key_says_everything_about_one_key(tmp_path, capsys):
    path = write(tmp_path / "e.yaml", "mode: cluster\ntraining:\n  learning_rate: 1.0e-3\n")
    code, out, err = run(capsys, "config", "explain", "--key", "training.learning_rate", "--config", str(path))
    assert code == 0
    assert "peak learning rate" in out and "number > 0" in out and "default      1.0e-6" in out
    assert "recommended  1.0e-6 to 5.0e-4" in out and f"0.001  from {path}:3" in out
    assert "GRPOConfig(learning_rate=...)" in out and "0.001 is outside the recommended range 1.0e-6 to 5.0e-4" in err
    code, out, _ = run(capsys, "config", "explain", "--key", "grpo.beta", "--set", "grpo.beta=0")
    assert "or 0" in out and "0.0  from --set grpo.beta" in out
    code, out, _ = run(capsys, "config", "explain", "--key", "grpo.epsilon_high")
    assert "pass-through TRL field" in out and "not set" in out and "Upper-bound epsilon" in out
    code, out, _ = run(capsys, "config", "explain", "--key", "training.bf16")
    assert "on this machine" in out and "GRPOConfig(bf16=...)" in out
    code, out, _ = run(capsys, "config", "explain", "--key", "grpo.generation_batch_size", "--mode", "cluster")
    assert "for this run" in out and "completions per round" in out
    code, out, err = run(capsys, "config", "explain", "--key", "training.lerning_rate")
    assert code == 2 and "Did you mean `training.learning_rate`?" in err
    code, out, err = run(capsys, "config", "explain", "--key", "training")
    assert code == 2 and "is a section" in err


def test_show_origins_ends_each_leaf_with_its_origin(chain, capsys):
    code, out, _ = run(capsys, "config", "show", "--origins", "--config", str(chain), "--set", "grpo.epsilon=0.3")
    assert code == 0
    lines = out.splitlines()
    assert f"  beta: 0.05  # {chain}:3" in lines and "  epsilon: 0.3  # --set grpo.epsilon" in lines
    assert any(line.startswith("  seed: 8  # ") and line.endswith("mid.yaml:3") for line in lines)
    assert "  weight_decay: 0.0  # default" in lines
    data = to_plain(read_yaml_file(write(chain.parent / "shown.yaml", out)), "shown")
    assert data == GRPOConfigLoader(config_path=chain, overrides=["grpo.epsilon=0.3"]).to_dict()


def test_validate_stays_fast_in_a_fresh_process(tmp_path):
    """The best of three runs, each a fresh interpreter: well under a second on an idle machine,
    with slack for a busy one (bench/cli_latency.py measures it properly)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "grpolab.cli.main", "config", "validate", str(REPO / "configs" / "grpo_cluster.yaml")]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        times.append(time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr
    assert min(times) < 1.5, times
