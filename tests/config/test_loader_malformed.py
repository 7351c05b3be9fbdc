"""The malformed-config corpus (tests/malformed/): every file is rejected with a ConfigError
that names what is wrong, where, and how to fix it; the CLI exits 2 without a traceback and
changes nothing on disk."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parents[1] / "malformed"
EXPECTED = YAML(typ="safe").load((CORPUS / "expected.yaml").read_text())
CASES = sorted(p.name for p in CORPUS.glob("*.yaml") if p.name != "expected.yaml")


def test_corpus_is_complete():
    assert len(CASES) >= 25
    assert set(CASES) == set(EXPECTED), "every corpus file needs an entry in expected.yaml (and vice versa)"
    assert b"\xe9" in (CORPUS / "07_non_utf8.yaml").read_bytes()  # really not UTF-8


@pytest.mark.parametrize("name", CASES)
def test_loader_rejects_with_expected_message(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the python-tag cases would create files here if they ran
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(config_path=CORPUS / name)
    message = str(info.value)
    spec = EXPECTED[name]
    for fragment in spec["fragments"]:
        assert fragment in message, f"{name}: {fragment!r} not in:\n{message}"
    if "line" in spec:
        assert f"{name}:{spec['line']}:" in message, f"{name}: line {spec['line']} not named in:\n{message}"
    if "problems" in spec:
        assert len(info.value.problems) == spec["problems"], message
    assert "Traceback" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", CASES)
def test_cli_validate_exits_2(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["config", "validate", str(CORPUS / name)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert name in err and "Traceback" not in err
    for fragment in EXPECTED[name]["fragments"]:
        assert fragment in err
    assert list(tmp_path.iterdir()) == []


def test_python_tags_are_never_executed(tmp_path):
    """A real subprocess, as a user would run it: no file appears, whatever the tag asks for."""
    names = ["09_python_tag_os_system.yaml", "10_python_tag_open.yaml"]
    for name in names:
        shutil.copy(CORPUS / name, tmp_path / name)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "grpolab.cli.main", "config", "validate", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path / "pwned_os_system").exists() and not (tmp_path / "pwned_open").exists()
    # The tags the files carry are the ones that would have created those files.
    assert 'os.system ["touch pwned_os_system"]' in (tmp_path / names[0]).read_text()
    assert 'builtins.open ["pwned_open", "w"]' in (tmp_path / names[1]).read_text()


def test_cli_validate_whole_corpus_in_one_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "grpolab.cli.main", "config", "validate", *[str(CORPUS / n) for n in CASES]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""  # no file was accepted
    for name in CASES:
        assert f"{name}: invalid config" in proc.stderr


def test_cli_validate_exit_2_when_one_of_several_is_bad(capsys):
    good = str(REPO / "configs" / "grpo_local.yaml")
    bad = str(CORPUS / "14_unknown_nested_key.yaml")
    assert main(["config", "validate", good, bad]) == 2
    out, err = capsys.readouterr()
    assert f"{good}: ok" in out
    assert "Did you mean `learning_rate`?" in err


@pytest.mark.parametrize("name", CASES)
def test_cli_set_on_malformed_file_changes_nothing(name, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(CORPUS / name, work / name)
    monkeypatch.chdir(work)
    snapshot = {p.name: p.read_bytes() for p in work.iterdir()}
    assert main(["config", "set", name, "grpo.beta=0.05"]) == 2  # in place
    assert main(["config", "set", name, "grpo.beta=0.05", "-o", "out.yaml"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in work.iterdir()} == snapshot


def test_directory_is_rejected(tmp_path, capsys):
    with pytest.raises(ConfigError, match="is a directory"):
        GRPOConfigLoader(config_path=tmp_path)
    assert main(["config", "validate", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_missing_path_is_rejected(tmp_path, capsys):
    missing = tmp_path / "nope" / "grpo_missing.yaml"
    with pytest.raises(ConfigError, match="file not found") as info:
        GRPOConfigLoader(config_path=missing)
    assert str(missing) in str(info.value)
    assert main(["config", "show", "--config", str(missing)]) == 2
    assert "file not found" in capsys.readouterr().err
    assert not missing.parent.exists()


def test_unknown_mode_argument():
    with pytest.raises(ConfigError, match="`clusterr` is not a mode.*Did you mean `cluster`") as info:
        GRPOConfigLoader(mode="clusterr")
    assert info.value.problems[0].origin == "--mode"


def test_empty_section_counts_as_no_keys(tmp_path):
    """`training:` with every key commented out is allowed (it sets nothing)."""
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  # learning_rate: 1.0e-4\ngrpo:\n  beta: 0.05\n")
    loader = GRPOConfigLoader(config_path=path)
    assert loader.get_param("training.learning_rate") == 5e-5  # the local preset's
    assert loader.get_param("grpo.beta") == 0.05


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("training.learning_rate", "is not of the form KEY=VALUE"),
        ("=1e-4", "is not of the form KEY=VALUE"),
        ("training..learning_rate=1", "is not a dotted key"),
        ("trainig.learning_rate=1e-4", "Did you mean `training`?"),
        ("training.learnin_rate=1e-4", "Did you mean `learning_rate`?"),
        ("training.learning_rate=abc", "valid number"),
        ("training.learning_rate=[1,", "YAML error"),
        ("training.learning_rate.x=1", "`training.learning_rate` is not a section"),
        ("rewards[3].weight=2", "index 3 is out of range"),
        ('output_dir=!!python/object/apply:os.system ["echo pwned"]', "is not allowed"),
        ("grpo.num_generations=1", "greater than or equal to 2"),
    ],
)
def test_bad_set_forms(item, fragment, capsys):
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(overrides=[item])
    assert fragment in str(info.value)
    assert main(["config", "show", "--set", item]) == 2
    out, err = capsys.readouterr()
    assert out == "" and fragment in err and "Traceback" not in err


def test_bad_assignment_in_config_set(tmp_path, capsys):
    target = tmp_path / "c.yaml"
    target.write_text("grpo:\n  beta: 0.05\n")
    assert main(["config", "set", str(target), "grpo.beta"]) == 2
    assert "is not of the form KEY=VALUE" in capsys.readouterr().err
    assert target.read_text() == "grpo:\n  beta: 0.05\n"


def _env():
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env
