"""A run directory is written by one run at a time, and resume never loses work: a leftover
hand-off is ignored, a directory with another run's record is refused, a live run's directory
cannot be resumed, and a checkpoint cut short is skipped for the one before."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.run import run_dir as run_dirs
from grpolab.run.record import RunInfo
from grpolab.train.request import TrainRequest

HOST = socket.gethostname()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_hand_off_from_another_launch_is_ignored(tmp_path, capsys):
    left = str(tmp_path / "old_run")
    assert (
        run_dirs.handed_over_run_dir({"GRPOLAB_RUN_DIR": left, "GRPOLAB_RUN_DIR_OWNER": f"pid:{dead_pid()}@{HOST}"})
        is None
    )
    assert "left by another launch" in capsys.readouterr().err
    sbatch_leftover = {"GRPOLAB_RUN_DIR": left + "2", "GRPOLAB_RUN_DIR_OWNER": "slurm:77", "SLURM_JOB_ID": "78"}
    assert run_dirs.handed_over_run_dir(sbatch_leftover) is None


def test_a_hand_off_from_this_launch_is_taken(tmp_path):
    mine = run_dirs.handoff_env(tmp_path / "run")  # bound to this process: its children take it
    assert run_dirs.handed_over_run_dir(mine) == tmp_path / "run"
    in_job = {"GRPOLAB_RUN_DIR": str(tmp_path), "GRPOLAB_RUN_DIR_OWNER": "slurm:77", "SLURM_JOB_ID": "77"}
    assert run_dirs.handed_over_run_dir(in_job) == tmp_path
    assert run_dirs.handed_over_run_dir({"GRPOLAB_RUN_DIR": str(tmp_path)}) == tmp_path  # set by hand
    remote = {"GRPOLAB_RUN_DIR": str(tmp_path), "GRPOLAB_RUN_DIR_OWNER": "pid:1@another-node"}
    assert run_dirs.handed_over_run_dir(remote) == tmp_path  # a trial on another machine


def test_a_child_process_takes_its_parents_hand_off(tmp_path):
    env = dict(os.environ, **run_dirs.handoff_env(tmp_path / "run"), PYTHONPATH=str(Path(__file__).parents[2]))
    code = "from grpolab.run.run_dir import handed_over_run_dir; print(handed_over_run_dir())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == str(tmp_path / "run"), done.stderr


def _record(path: Path, **values) -> None:
    path.mkdir(parents=True, exist_ok=True)
    RunInfo(**values).save(path)


def test_a_directory_with_another_runs_record_is_refused(tmp_path):
    from grpolab.train.recording import _refuse_another_runs_record

    loader = GRPOConfigLoader(mode="local")
    sha = run_dirs.config_sha256(loader.to_dict())
    _record(tmp_path / "finished", run_name="old", status="finished", config_sha256=sha)
    with pytest.raises(ConfigError, match="already holds the record of run old") as info:
        _refuse_another_runs_record(tmp_path / "finished", loader)
    assert "unset GRPOLAB_RUN_DIR" in str(info.value)
    _record(tmp_path / "other", run_name="x", status="failed", config_sha256="0" * 64)
    with pytest.raises(ConfigError, match="another config"):
        _refuse_another_runs_record(tmp_path / "other", loader)
    _record(tmp_path / "requeued", run_name="r", status="running", config_sha256=sha)  # no checkpoint yet
    _refuse_another_runs_record(tmp_path / "requeued", loader)  # the same config may start over
    (tmp_path / "empty").mkdir()
    _refuse_another_runs_record(tmp_path / "empty", loader)


def test_resume_of_a_live_run_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    from grpolab.runtime.hardware import HardwareFacts
    from grpolab.runtime.resolve import resolve
    from grpolab.train.resume import check_resumable

    resolved = resolve(GRPOConfigLoader(mode="local").config, HardwareFacts())
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / run_dirs.LOCK).write_text(f"{live.pid}@{HOST}\n")
        with pytest.raises(ConfigError, match=f"still training \\(pid {live.pid} on {HOST}\\)"):
            check_resumable(TrainRequest(resume=str(tmp_path)), resolved)
    finally:
        live.kill()
        live.wait()
    (tmp_path / run_dirs.LOCK).write_text(f"{dead_pid()}@{HOST}\n")
    check_resumable(TrainRequest(resume=str(tmp_path)), resolved)  # its process is gone: stale
    run_dirs.take_lock(tmp_path)
    assert run_dirs.live_lock(tmp_path) is None  # ours
    run_dirs.release_lock(tmp_path)
    assert not (tmp_path / run_dirs.LOCK).exists()


def _checkpoint(folder: Path, whole: bool = True) -> None:
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    blob = struct.pack("<Q", len(header)) + header + b"\0\0\0\0"
    (folder / "model.safetensors").write_bytes(blob if whole else blob[:12])


def test_resume_takes_the_newest_complete_checkpoint(tmp_path, capsys):
    from grpolab.train.resume import last_checkpoint

    _checkpoint(tmp_path / "checkpoint-4")
    _checkpoint(tmp_path / "checkpoint-8", whole=False)  # killed while saving
    (tmp_path / "checkpoint-12").mkdir()  # killed before anything was written
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    out = capsys.readouterr().out
    assert "skipping checkpoint-12: trainer_state.json is missing" in out
    assert "skipping checkpoint-8: model.safetensors is truncated" in out and "resuming from checkpoint-4" in out


def test_no_complete_checkpoint_is_a_clear_error(tmp_path):
    from grpolab.train.resume import last_checkpoint

    _checkpoint(tmp_path / "checkpoint-3", whole=False)
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        last_checkpoint(tmp_path)


def test_resume_runs_in_the_runs_recorded_working_directory(tmp_path, monkeypatch):
    from grpolab.train.resume import prepare

    started_in, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    started_in.mkdir(), elsewhere.mkdir()
    _record(started_in / "runs" / "r1", run_name="r1", status="interrupted", cwd=str(started_in))
    monkeypatch.chdir(elsewhere)
    request = prepare(TrainRequest(resume="../project/runs/r1"))
    assert Path.cwd() == started_in and request.resume == str(started_in / "runs" / "r1")
