"""Every command of the tuning loop that writes a file the user names (compare --out, doctor
--write-config, config scale -o, config import -o) x every kind of bad place: an existing file,
a folder not made yet, a folder given as the file, a file given as the folder, a place that cannot
be written. None loses data or ends in a traceback: an existing file is kept unless --force, a
missing folder is made (as for every file grpolab writes), the rest is one `error:` line naming
the path, with exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from grpolab.cli.main import main
from grpolab.config import GRPOConfigLoader
from grpolab.config.yaml_io import dump_yaml


def _run_dir(tmp_path: Path) -> Path:
    """A finished run whose learning rate is out of the recommended range: doctor has an edit for it."""
    run = tmp_path / "runs" / "run1"
    run.mkdir(parents=True)
    loader = GRPOConfigLoader.from_dict({"mode": "local", "training": {"learning_rate": 0.5}})
    (run / "resolved_config.yaml").write_text(dump_yaml(loader.to_dict()))
    (run / "run_info.json").write_text(json.dumps({"status": "finished", "world_size": 1, "run_name": "run1"}))
    rows = [{"step": s, "reward": 0.1 * s, "reward_std": 0.3, "loss": 0.01} for s in range(1, 6)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def _commands(tmp_path: Path) -> dict:
    """command -> (argv before the output path, the flag that names it, the file type it writes)."""
    run = _run_dir(tmp_path)
    config = tmp_path / "exp.yaml"
    config.write_text("mode: local\n")
    return {
        "compare --out": (["compare", str(run)], "--out", ".png"),
        "doctor --write-config": (["doctor", str(run)], "--write-config", ".yaml"),
        "config scale -o": (["config", "scale", str(config), "--gpus", "2"], "-o", ".yaml"),
        "config import -o": (
            ["config", "import", str(REPO_ROOT / "tests" / "recipes" / "trl_colocate_minimal.yaml")],
            "-o",
            ".yaml",
        ),
    }


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes through file modes: /proc refuses new files to everyone
        return Path("/proc/self/grpolab-cannot-write")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    return folder


PLACES = ["existing file", "missing folder", "folder given as the file", "file given as the folder", "unwritable"]


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("command", ["compare --out", "doctor --write-config", "config scale -o", "config import -o"])
def test_output_paths_lose_nothing_and_never_trace_back(command, place, tmp_path, capsys):
    argv, flag, suffix = _commands(tmp_path)[command]
    name = "out" + suffix
    if place == "existing file":
        out = tmp_path / name
        out.write_text("the user's own file\n")
    elif place == "missing folder":
        out = tmp_path / "not" / "made" / "yet" / name
    elif place == "folder given as the file":
        out = tmp_path / "a-folder"
        (out / "keep.txt").parent.mkdir()
        (out / "keep.txt").write_text("kept\n")
    elif place == "file given as the folder":
        (tmp_path / "a-file").write_text("kept\n")
        out = tmp_path / "a-file" / name
    else:
        out = _unwritable(tmp_path) / name
    capsys.readouterr()
    code = main([*argv, flag, str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if place == "missing folder":
        assert code == 0, err
        assert out.is_file() and out.stat().st_size > 0
        return
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(out) in errors[0], err
    if place == "existing file":
        assert out.read_text() == "the user's own file\n"  # kept
        assert "--force" in errors[0]
        assert main([*argv, flag, str(out), "--force"]) == 0
        assert out.read_bytes() != b"the user's own file\n"
    elif place == "folder given as the file":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    elif place == "file given as the folder":
        assert (tmp_path / "a-file").read_text() == "kept\n"


def test_compare_default_plot_is_its_own_and_is_replaced(tmp_path, capsys):
    """Without --out the plot goes into the first run's folder, and a second compare replaces it."""
    run = _run_dir(tmp_path)
    assert main(["compare", str(run)]) == 0
    first = (run / "compare.png").stat().st_mtime_ns
    assert main(["compare", str(run), "--metric", "loss"]) == 0
    assert (run / "compare.png").stat().st_mtime_ns >= first
    assert f"plot: {run / 'compare.png'}" in capsys.readouterr().out


def test_compare_out_of_an_unknown_image_type_is_refused(tmp_path, capsys):
    run = _run_dir(tmp_path)
    assert main(["compare", str(run), "--out", str(tmp_path / "plot.yaml")]) == 2
    err = capsys.readouterr().err
    assert "`.yaml` is not an image type" in err and "plot.png" in err
    assert not (tmp_path / "plot.yaml").exists()
