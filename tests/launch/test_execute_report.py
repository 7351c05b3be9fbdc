"""What a failed launch leaves: rank 0's own error once with its exit code (2 for a config
error that only the ranks could find), a failed record for a run that started, and no trace of a
launch in which no run ever started."""

from __future__ import annotations

import json

from grpolab.launch.execute import LaunchSpec, report_failure
from grpolab.run.record import RunInfo
from grpolab.run.run_dir import record_rank_error


def launch_left_behind(tmp_path):
    run_dir = tmp_path / "runs" / "cluster_x"
    config = run_dir / "accelerate_config.yaml"
    run_dir.mkdir(parents=True)
    config.write_text("distributed_type: MULTI_GPU\n")
    (run_dir / "launch_command.sh").write_text("accelerate launch ...\n")
    return LaunchSpec(cmd=["accelerate", "launch"], env={}, files={config: ""}, run_dir=run_dir)


def test_a_config_error_inside_the_ranks_keeps_exit_2_and_leaves_nothing(tmp_path, capsys):
    spec = launch_left_behind(tmp_path)
    record_rank_error(spec.run_dir, 1, 2, "invalid config: rewards[0].name: no such reward (rank 1)")
    record_rank_error(spec.run_dir, 0, 2, "invalid config: rewards[0].name: no such reward")
    assert report_failure(spec, 1) == 2  # the launcher said 1 for every rank; the ranks said 2
    err = capsys.readouterr().err
    # Said once, from the rank that recorded it first (rank 1 here): the others are not repeated.
    assert err.count("error (rank 1): invalid config: rewards[0].name: no such reward (rank 1)") == 1
    assert err.count("error (rank") == 1
    assert f"removed {spec.run_dir}: the run never started" in err
    assert not spec.run_dir.exists() and (tmp_path / "runs").is_dir()


def test_a_directory_with_other_files_is_kept(tmp_path, capsys):
    spec = launch_left_behind(tmp_path)
    (spec.run_dir / "notes.txt").write_text("the user's")
    record_rank_error(spec.run_dir, 0, 2, "invalid config: x")
    assert report_failure(spec, 1) == 2
    assert (spec.run_dir / "notes.txt").read_text() == "the user's"  # never deleted
    assert not (spec.run_dir / "launch_command.sh").exists() and "removed" not in capsys.readouterr().err


def test_ranks_that_died_while_running_are_recorded_as_failed(tmp_path, capsys):
    spec = launch_left_behind(tmp_path)
    RunInfo(run_name="cluster_x", status="running").save(spec.run_dir)
    record_rank_error(spec.run_dir, 0, 1, "reward `score` raised ValueError on completion 3")
    assert report_failure(spec, 1) == 1
    info = json.loads((spec.run_dir / "run_info.json").read_text())
    assert info["status"] == "failed" and info["exit_code"] == 1 and "raised ValueError" in info["error"]
    assert (spec.run_dir / "launch_command.sh").is_file()  # a run that started keeps how it was launched


def test_a_rank_that_recorded_its_own_end_keeps_its_exit_code(tmp_path):
    spec = launch_left_behind(tmp_path)
    RunInfo(run_name="cluster_x", status="interrupted", exit_code=143).save(spec.run_dir)
    assert report_failure(spec, 1) == 143
