"""Every write is safe, and the newcomer path says what happened (issue 16, sections 1 and 6):
writes go only to regular files or new paths, presets are never edited in place, an edited file
keeps its links, permissions, line endings, BOM and flow style, `runs annotate` notices a config
that changed since the run; errors say what kind of problem they are and give CLI advice on the
command line; changing the mode re-layers the other preset."""

from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.yaml_io import dump_yaml, write_atomic
from grpolab.experiment import annotate as annotate_mod
from grpolab.experiment.runs import default_dirs

LOCAL = REPO_ROOT / "configs" / "grpo_local.yaml"


def user_config(tmp_path, text="mode: local\ntraining:\n  learning_rate: 1.0e-4  # mine\n", name="mine.yaml"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


# ----------------------------------------------------------------------------- where writes may go
@pytest.mark.parametrize("force", [False, True])
def test_a_device_is_never_replaced(tmp_path, capsys, force):
    src = user_config(tmp_path)
    args = ["config", "set", str(src), "grpo.beta=0.05", "-o", "/dev/null"] + (["--force"] if force else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error: cannot write: /dev/null: is not a regular file" in err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_pipe_is_refused_and_a_directory_too(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file") as info:
        write_atomic(fifo, "x\n", overwrite=True)
    assert info.value.kind == "cannot write" and stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(ConfigError, match="is a directory"):
        write_atomic(tmp_path, "x\n", overwrite=True)


def test_a_shipped_preset_is_not_edited_in_place(capsys):
    before = LOCAL.read_bytes()
    assert main(["config", "set", str(LOCAL), "grpo.beta=0.05"]) == 2
    err = capsys.readouterr().err
    assert "is a shipped preset" in err and "-o configs/grpo_local_mine.yaml" in err and "config new" in err
    assert not err.startswith("error: invalid config")
    assert LOCAL.read_bytes() == before


def test_a_preset_copy_with_o_is_fine(tmp_path, capsys):
    out = tmp_path / "copy.yaml"
    assert main(["config", "set", str(LOCAL), "grpo.beta=0.05", "-o", str(out)]) == 0
    assert "beta: 0.05  # Changed from" in out.read_text()


# ----------------------------------------------------------------------------- what the file keeps
def test_in_place_edit_keeps_link_hard_link_mode_crlf_and_bom(tmp_path):
    text = "\ufeffmode: local\r\nlogging:\r\n  tags: [a, b]  # t\r\ntraining:\r\n  learning_rate: 1.0e-4  # mine\r\n"
    real = user_config(tmp_path, text, "real.yaml")
    os.chmod(real, 0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to("real.yaml")
    hard = tmp_path / "hard.yaml"
    os.link(real, hard)
    assert main(["config", "set", str(link), "grpo.beta=0.05"]) == 0
    assert link.is_symlink() and os.readlink(link) == "real.yaml"
    raw = real.read_bytes()
    assert hard.read_bytes() == raw and os.stat(real).st_ino == os.stat(hard).st_ino
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o640
    assert raw.startswith(b"\xef\xbb\xbfmode: local\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n") and b"beta: 0.05  # Changed from 0.01\r\n" in raw
    assert b"  tags: [a, b]  # t\r\n" in raw
    assert GRPOConfigLoader(config_path=real).get_param("grpo.beta") == 0.05


def test_edits_inside_flow_collections_keep_them_on_one_line(tmp_path):
    path = user_config(
        tmp_path,
        "mode: local\nlogging: {report_to: [none], tags: [a, b]}\nrewards: [{name: numeric_match, weight: 1.0}]\n"
        'env: {A: "1"}\n',
    )
    assert main(["config", "set", str(path), "logging.project=p", "rewards[0].weight=2.0", "env.B=2"]) == 0
    assert path.read_text().splitlines() == [
        "mode: local",
        "logging: {report_to: [none], tags: [a, b], project: p}",
        "rewards: [{name: numeric_match, weight: 2.0}]",
        'env: {A: "1", B: 2}',
    ]
    assert GRPOConfigLoader(config_path=path).config.env == {"A": "1", "B": "2"}


# ----------------------------------------------------------------------------- runs annotate
def _recorded_run(tmp_path, config: pathlib.Path) -> pathlib.Path:
    run_dir = tmp_path / "runs" / "mine_20260101-000000"
    run_dir.mkdir(parents=True)
    info = {"run_name": run_dir.name, "status": "finished", "config_file": str(config), "global_step": 3}
    info["host"] = {"hostname": socket.gethostname()}
    (run_dir / "run_info.json").write_text(json.dumps(info))
    (run_dir / "summary.json").write_text(json.dumps({"final": {"reward": 0.5}, "best": {"reward": 0.6}}))
    resolved = GRPOConfigLoader(config_path=config).to_dict()  # as the run recorded it (run/run_dir.py)
    (run_dir / "resolved_config.yaml").write_text(dump_yaml(resolved))
    return run_dir


def test_annotate_refuses_a_config_changed_since_the_run(tmp_path, capsys):
    config = user_config(tmp_path)
    run_dir = _recorded_run(tmp_path, config)
    config.write_text(config.read_text().replace("1.0e-4", "3.0e-4"))
    before = config.read_bytes()
    assert main(["runs", "annotate", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config changed: ")
    assert "training.learning_rate: 1.0e-4 -> 3.0e-4" in err and "--allow-changed" in err
    assert config.read_bytes() == before
    assert main(["runs", "annotate", str(run_dir), "--allow-changed"]) == 0
    assert (
        "# Warning: this file changed since the run: training.learning_rate: 1.0e-4 -> 3.0e-4\n" in config.read_text()
    )
    assert config.read_text().endswith(before.decode())


def test_annotate_of_an_unchanged_config_has_no_warning(tmp_path):
    config = user_config(tmp_path)
    _, block = annotate_mod.annotate(_recorded_run(tmp_path, config))
    assert "Warning" not in block and "run mine_20260101-000000" in block


# ----------------------------------------------------------------------------- what errors say
def test_file_exists_says_so_with_cli_advice_on_the_command_line(tmp_path, capsys):
    src, out = user_config(tmp_path), user_config(tmp_path, name="taken.yaml")
    assert main(["config", "set", str(src), "grpo.beta=0.05", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: file exists: {out}: refusing to overwrite it.")
    assert "--force" in err and "overwrite=True" not in err and "invalid config" not in err


def test_file_exists_gives_python_advice_in_python(tmp_path):
    loader = GRPOConfigLoader(mode="local")
    taken = user_config(tmp_path, name="taken.yaml")
    with pytest.raises(ConfigError) as info:
        loader.save_config(taken)
    assert (
        info.value.kind == "file exists" and "overwrite=True" in str(info.value) and "--force" not in str(info.value)
    )


def test_the_cli_wording_lasts_only_as_long_as_the_command(tmp_path, capsys):
    """A library call after a command, or in another thread during one, still gets Python's advice."""
    import threading

    from grpolab.config.errors import advise, cli_audience

    test_file_exists_says_so_with_cli_advice_on_the_command_line(tmp_path, capsys)
    test_file_exists_gives_python_advice_in_python(tmp_path)  # right after main() returned
    seen = []
    with cli_audience():
        worker = threading.Thread(target=lambda: seen.append(advise(cli="cli", python="python")))
        worker.start()
        worker.join()
        seen.append(advise(cli="cli", python="python"))
    assert seen == ["python", "cli"]


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("grpolab ")
    done = subprocess.run([sys.executable, "-m", "grpolab.cli.main", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and re.match(r"grpolab \d", done.stdout)


# ----------------------------------------------------------------------------- the mode
def test_set_mode_cluster_layers_the_cluster_preset():
    by_set = GRPOConfigLoader(overrides=["mode=cluster"]).to_dict()
    assert by_set == GRPOConfigLoader(mode="cluster").to_dict()
    assert by_set["training"]["gradient_checkpointing"] is True  # the cluster preset's value, not local's
    with pytest.raises(ConfigError, match="--mode local and --set mode=cluster disagree"):
        GRPOConfigLoader(mode="local", overrides=["mode=cluster"])
    assert GRPOConfigLoader(mode="cluster", overrides=["mode=cluster"]).to_dict() == by_set
    shown = subprocess.run(
        [sys.executable, "-m", "grpolab.cli.main", "config", "show", "--set", "mode=cluster"],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0 and "gradient_checkpointing: true" in shown.stdout


def test_config_set_mode_relayers_and_saves_a_file_that_reloads_the_same(tmp_path, capsys):
    path = user_config(tmp_path)
    assert main(["config", "set", str(path), "mode=cluster"]) == 0
    assert "mode: cluster  # Changed from local" in path.read_text()
    loaded = GRPOConfigLoader(config_path=path)
    assert loaded.mode == "cluster" and loaded.get_param("training.learning_rate") == 1e-4
    assert loaded.get_param("training.gradient_checkpointing") is True
    assert main(["config", "set", str(path), "mode=clustr"]) == 2
    assert "Did you mean `cluster`?" in capsys.readouterr().err


def test_update_param_mode_keeps_earlier_changes_and_refuses_a_base_of_the_other_mode(tmp_path):
    loader = GRPOConfigLoader(mode="local")
    loader.update_param("grpo.beta", 0.05)
    loader.update_param("mode", "cluster")
    assert loader.get_param("grpo.beta") == 0.05 and loader.mode == "cluster"
    assert loader.get_param("training.gradient_checkpointing") is True
    base = user_config(tmp_path, "mode: local\n", "base.yaml")
    child = user_config(tmp_path, f"base: {base.name}\ntraining:\n  seed: 1\n", "child.yaml")
    child_loader = GRPOConfigLoader(config_path=child)
    with pytest.raises(ConfigError, match="its base .*base.yaml has mode `local`"):
        child_loader.update_param("mode", "cluster")
    assert child_loader.mode == "local"


# ----------------------------------------------------------------------------- values from Python
def test_update_param_takes_numpy_numbers_and_paths(tmp_path):
    loader = GRPOConfigLoader(mode="local")
    loader.update_params(
        {
            "training.max_steps": np.int64(5),
            "training.learning_rate": np.float32(1e-4),
            "grpo.log_completions": np.bool_(True),
            "output_dir": pathlib.Path("runs") / "x",
        }
    )
    assert loader.get_param("training.max_steps") == 5 and type(loader.get_param("training.max_steps")) is int
    assert loader.get_param("training.learning_rate") == 1e-4
    assert loader.get_param("grpo.log_completions") is True and loader.get_param("output_dir") == "runs/x"
    text = loader.save_config(tmp_path / "np.yaml").read_text()
    assert "learning_rate: 1.0e-4  # Changed from" in text and "max_steps: 5  # Changed from" in text


# ----------------------------------------------------------------------------- runs list
def test_runs_list_reads_every_grpo_results_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["runs", "list"]) == 0 and "no ./grpo_results* folder" in capsys.readouterr().out
    for folder in ("grpo_results_demo", "grpo_results_sweep"):
        run = tmp_path / folder / f"{folder}_run"
        run.mkdir(parents=True)
        info = {"run_name": run.name, "status": "finished", "started": "2026-01-02T03:04:05+00:00"}
        (run / "run_info.json").write_text(json.dumps({**info, "host": {"hostname": socket.gethostname()}}))
    (tmp_path / "grpo_results_file").write_text("not a folder")
    assert [p.name for p in default_dirs()] == ["grpo_results_demo", "grpo_results_sweep"]
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert "grpo_results_demo_run" in out and "grpo_results_sweep_run" in out


@pytest.mark.parametrize("name", ["x.yaml/", "sub/x.yaml/", "./x.yaml//"])
def test_a_file_named_with_a_trailing_slash_is_refused_from_python_too(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        write_atomic(name, "x: 1\n")
    assert "ends in /, so it names a folder, not a file" in str(info.value)
    assert f"Fix: drop the trailing /: {name.rstrip('/')}" in str(info.value)
    assert not list(tmp_path.iterdir())
    assert write_atomic(name.rstrip("/"), "x: 1\n").read_text() == "x: 1\n"  # the fix it gives
