"""Concurrent edits lose nothing (issue 21, section 1).

Every read-modify-write of a user file takes the file's edit lock and re-reads under it, so
concurrent edits run one after the other and each keeps the others' changes; a writer that got in
between a read and its write anyway (an editor, a script) makes the edit refuse with
"changed while editing: rerun" instead of silently dropping that writer's change."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from conftest import REPO_ROOT

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader, yaml_io
from grpolab.config.yaml_io import edit_lock, read_yaml_file, to_plain

MINE = "mode: local\ntraining:\n  learning_rate: 1.0e-4  # mine\n"


def mine(tmp_path, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(MINE)
    return path


def env_of(path):
    return to_plain(read_yaml_file(path), str(path)).get("env", {})


def test_many_concurrent_config_set_processes_keep_every_edit(tmp_path):
    """The issue's example: before, one of two concurrent `config set` edits was lost in 15 of 20
    rounds while both printed "wrote F". Eight processes at once: every edit is in the file."""
    path = mine(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "grpolab", "config", "set", str(path), f"env.V{i}={i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(8)
    ]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    for _out, err, rc in results:
        assert rc == 0, err
        assert "internal error" not in err
    assert env_of(path) == {f"V{i}": i for i in range(8)}
    assert "learning_rate: 1.0e-4  # mine" in path.read_text()


def test_many_concurrent_config_set_threads_keep_every_edit(tmp_path, capsys):
    path = mine(tmp_path)
    codes = []

    def one(i):
        codes.append(main(["config", "set", str(path), f"env.T{i}={i}"]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0] * 12, capsys.readouterr().err
    assert env_of(path) == {f"T{i}": i for i in range(12)}


def test_concurrent_save_config_from_python_threads_keep_every_edit(tmp_path):
    """The Python API: each thread loads, changes and saves under the file's lock."""
    path = mine(tmp_path)
    errors = []

    def one(i):
        try:
            with edit_lock(path):
                loader = GRPOConfigLoader(config_path=path)
                loader.update_param(f"env.P{i}", str(i))
                loader.save_config(path, overwrite=True)
        except Exception as exc:  # noqa: BLE001 - the test reports any failure below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert env_of(path) == {f"P{i}": str(i) for i in range(8)}


# ------------------------------------------------------------------ every read-modify-write path
# Each edit below reads a user file, changes it and writes it back. An intruder writes the file
# after the edit read it and before its write (as an editor or a lock-less script would): the
# edit must refuse, name the file and say rerun, and the intruder's text must survive.
INTRUDER = "# written by someone else meanwhile\n"


def _save_config(tmp_path, path):
    loader = GRPOConfigLoader(config_path=path)
    loader.update_param("grpo.beta", 0.05)
    loader.save_config(path, overwrite=True)


def _config_set(tmp_path, path):
    rc = main(["config", "set", str(path), "grpo.beta=0.05"])
    assert rc == 2
    raise ConfigError("config set exited 2")


def _minimize(tmp_path, path):
    from grpolab.config.files import minimize
    from grpolab.config.yaml_io import write_atomic

    out, text = minimize(path)
    write_atomic(out, text, overwrite=True)


def _annotate(tmp_path, path):
    import json
    import socket

    from grpolab.config.yaml_io import dump_yaml
    from grpolab.experiment.annotate import annotate

    run_dir = tmp_path / "runs" / "mine_20260101-000000"
    run_dir.mkdir(parents=True)
    info = {"run_name": run_dir.name, "status": "finished", "config_file": str(path), "global_step": 3}
    info["host"] = {"hostname": socket.gethostname()}
    (run_dir / "run_info.json").write_text(json.dumps(info))
    (run_dir / "summary.json").write_text(json.dumps({"final": {"reward": 0.5}}))
    (run_dir / "resolved_config.yaml").write_text(dump_yaml(GRPOConfigLoader(config_path=path).to_dict()))
    annotate(run_dir)


EDITS = {"save_config": _save_config, "config set": _config_set, "minimize": _minimize, "annotate": _annotate}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_write_between_read_and_write_is_refused_never_lost(edit, tmp_path, monkeypatch, capsys):
    path = mine(tmp_path)
    real = yaml_io._write_atomic
    intruded = []

    def racing(target, text, overwrite, expect):
        if target.exists() and not intruded:
            intruded.append(target)
            target.write_text(target.read_text() + INTRUDER)
        return real(target, text, overwrite, expect)

    monkeypatch.setattr(yaml_io, "_write_atomic", racing)
    with pytest.raises(ConfigError) as info:
        EDITS[edit](tmp_path, path)
    assert intruded, "the edit never wrote the file"
    message = str(info.value) + capsys.readouterr().err
    assert "changed while editing" in message and "Fix: rerun" in message and str(path) in message
    assert "internal error" not in message
    assert path.read_text() == MINE + INTRUDER


def test_a_change_after_loading_is_refused_by_save_config(tmp_path):
    """A loader keeps the version it read: saving over a file someone changed since refuses,
    even when another loader in the same thread read the newer version meanwhile."""
    path = mine(tmp_path)
    loader = GRPOConfigLoader(config_path=path)
    loader.update_param("grpo.beta", 0.05)
    path.write_text(MINE.replace("1.0e-4", "3.0e-4"))
    GRPOConfigLoader(config_path=path)
    with pytest.raises(ConfigError, match="changed while editing") as info:
        loader.save_config(path, overwrite=True)
    assert info.value.kind == "config changed"
    assert "3.0e-4" in path.read_text()
    with pytest.raises(ConfigError, match="changed while editing"):  # a copy would mix the two versions
        loader.save_config(tmp_path / "copy.yaml")
    assert not (tmp_path / "copy.yaml").exists()


def test_edit_lock_is_reentrant_and_exclusive_across_threads(tmp_path):
    path = mine(tmp_path)
    order = []

    def other():
        with edit_lock(path):
            order.append("other")

    with edit_lock(path):
        with edit_lock(path):  # the same thread again: no deadlock
            t = threading.Thread(target=other)
            t.start()
            t.join(0.3)
            assert order == []  # the other thread waits for the lock
            order.append("first")
    t.join(5)
    assert order == ["first", "other"]
