"""grpolab.run.record and run_dir: typed run_info.json / summary.json that read older files and
keep keys they do not know, atomic saves, the run directory's name, and the config sha256 that
the launcher and its ranks both compute."""

from __future__ import annotations

import hashlib
import json
import re

from grpolab.config import GRPOConfigLoader
from grpolab.run import run_dir as rd
from grpolab.run.record import RunInfo, Summary


def test_run_info_round_trip_keeps_unknown_keys_and_key_names(tmp_path):
    data = {
        "run_name": "r",
        "config_file": "configs/x.yaml",
        "git": {"commit": "0123456789abcdef", "dirty": True},
        "host": {"hostname": "h"},
        "status": "running",
        "pid": 12,
        "started": "2026-01-02T03:04:05+00:00",
        "from_a_newer_grpolab": {"a": 1},
    }
    (tmp_path / "run_info.json").write_text(json.dumps(data))
    info = RunInfo.load(tmp_path)
    assert (info.run_name, info.commit, info.dirty, info.hostname, info.pid) == (
        "r",
        "0123456789abcdef",
        True,
        "h",
        12,
    )
    assert info.extra == {"from_a_newer_grpolab": {"a": 1}}
    assert info.to_dict() == data  # no key added while the run is going
    info.update(status="finished", ended="2026-01-02T04:00:00+00:00", exit_code=0, global_step=3, note="x")
    info.save(tmp_path)
    saved = json.loads((tmp_path / "run_info.json").read_text())
    assert saved["status"] == "finished" and saved["exit_code"] == 0 and saved["note"] == "x"
    assert "error" in saved and saved["error"] is None  # an ended run says it had no error
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_unreadable_and_odd_files_read_as_empty_records(tmp_path):
    assert RunInfo.load(tmp_path) == RunInfo()
    (tmp_path / "run_info.json").write_text('{"status": "runn')  # torn by a hard kill
    assert RunInfo.load(tmp_path).status is None
    (tmp_path / "run_info.json").write_text("[1, 2]")
    assert RunInfo.load(tmp_path) == RunInfo()
    (tmp_path / "run_info.json").write_text('{"git": "not a mapping", "status": "failed"}')
    info = RunInfo.load(tmp_path)
    assert info.git is None and info.commit is None and info.status == "failed"
    (tmp_path / "summary.json").write_text('{"final": 3, "best": {"reward": 1}, "global_step": 4}')
    summary = Summary.load(tmp_path)
    assert summary.final == {} and summary.best == {"reward": 1} and summary.step_count == 4


def test_summary_keys_are_todays(tmp_path):
    summary = Summary(final={"reward": 0.5}, best={"reward": 0.7}, steps=3, status="finished", train_seconds=1.5)
    summary.update(eval={"accuracy_before": 0.1, "accuracy_after": 0.3})
    summary.save(tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text()) == {
        "final": {"reward": 0.5},
        "best": {"reward": 0.7},
        "steps": 3,
        "status": "finished",
        "train_seconds": 1.5,
        "eval": {"accuracy_before": 0.1, "accuracy_after": 0.3},
    }


def test_run_dir_names_are_owned_here(tmp_path):
    assert rd.run_stem("configs/grpo_cluster_high_lr.yaml") == "grpo_cluster_high_lr"
    assert rd.run_stem(None, "presets/grpo_local.yaml") == "grpo_local"
    assert re.fullmatch(r"x_\d{8}-\d{6}", rd.stamped_name("x"))
    first, second = rd.create_run_dir(tmp_path, "x", "same"), rd.create_run_dir(tmp_path, "x", "same")
    assert (first.name, second.name) == ("same", "same-2")
    assert rd.remove_if_empty(second) and not second.exists()
    (first / "f").write_text("kept")
    assert not rd.remove_if_empty(first) and first.is_dir()


def test_names_a_launch_shares_come_from_here():
    assert rd.shared_run_name("exp", {"SLURM_JOB_ID": "42"}) == "exp_slurm-42"
    assert rd.shared_run_name("exp", {"SLURM_JOB_ID": "42", "SLURM_STEP_ID": "3"}) == "exp_slurm-42.3"
    assert rd.shared_run_name("exp", {"TORCHELASTIC_RUN_ID": "abcdef0123456789"}) == "exp_abcdef0123456"
    assert rd.shared_run_name("exp", {"TORCHELASTIC_RUN_ID": "none"}) is None
    assert rd.slurm_run_name("exp").replace("${SLURM_JOB_ID}", "42") == rd.shared_run_name(
        "exp", {"SLURM_JOB_ID": "42"}
    )


def test_config_sha_is_the_sha_of_resolved_config_yaml(tmp_path):
    """The launcher's hand-off and the run directory's record are the same hash."""
    loader = GRPOConfigLoader(mode="cluster", overrides=["grpo.beta=0.05"])
    sha = rd.write_config_files(tmp_path, loader.to_dict(), loader.overrides)
    assert sha == rd.config_sha256(loader.to_dict())
    assert sha == hashlib.sha256((tmp_path / "resolved_config.yaml").read_bytes()).hexdigest()
    env = rd.handoff_env(tmp_path, loader.to_dict())
    assert (env["GRPOLAB_RUN_DIR"], env["GRPOLAB_CONFIG_SHA256"]) == (str(tmp_path), sha)
    assert rd.handed_over_run_dir(env) == tmp_path and rd.handed_over_sha(env) == sha
    assert rd.handed_over_run_dir({}) is None
    bare = rd.handoff_env(tmp_path)
    assert bare["GRPOLAB_RUN_DIR"] == str(tmp_path) and "GRPOLAB_CONFIG_SHA256" not in bare
    # --resume keeps overrides.yaml as it is.
    (tmp_path / "overrides.yaml").write_text("mine\n")
    rd.write_config_files(tmp_path, loader.to_dict(), None)
    assert (tmp_path / "overrides.yaml").read_text() == "mine\n"
