"""The argparse types every command shares (grpolab/cli/common.py)."""

from __future__ import annotations

import argparse

import pytest

from grpolab.cli.main import build_parser, main

# Every option that names a file a command writes, as a user would type it with a trailing slash.
WRITERS = [
    ["config", "set", "f.yaml", "grpo.beta=0.1", "-o", "{out}"],
    ["config", "schema", "-o", "{out}"],
    ["config", "new", "{out}"],
    ["config", "minimize", "f.yaml", "-o", "{out}"],
    ["compare", "a", "b", "--out", "{out}"],
    ["config", "import", "recipe.yaml", "-o", "{out}"],
    ["doctor", "run", "--write-config", "{out}"],
    ["probe", "f.yaml", "--write-filtered", "{out}"],
    ["config", "scale", "f.yaml", "--gpus", "8", "-o", "{out}"],
    ["launch", "slurm", "--nodes", "1", "--gpus-per-node", "8", "-o", "{out}"],
]


@pytest.mark.parametrize("argv", WRITERS, ids=lambda argv: " ".join(argv[:2]))
@pytest.mark.parametrize("out", ["x.yaml/", "sub/x.yaml/", "./x.yaml//"])
def test_a_file_to_write_named_with_a_trailing_slash_is_refused(tmp_path, monkeypatch, capsys, argv, out):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(out=out) for arg in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "ends in /, so it names a folder, not a file. Fix: drop the trailing /: " + out.rstrip("/") in err
    assert not list(tmp_path.iterdir())  # nothing written, not even the name without its slash


@pytest.mark.parametrize("argv", WRITERS, ids=lambda argv: " ".join(argv[:2]))
@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_file_name_to_write_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys, argv, out):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(out=out) for arg in argv])
    assert exit_info.value.code == 2 and "is empty. Fix: give the name of a file to write" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_every_command_that_can_overwrite_a_file_types_its_output_as_one():
    """A command with --force writes a file: its output argument is checked by output_file."""
    from grpolab.cli.common import output_file

    def commands(parser, path=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from commands(sub, (*path, name))
        yield path, parser

    checked = 0
    for path, parser in commands(build_parser()):
        options = {opt for action in parser._actions for opt in action.option_strings}
        # cp's DEST may be a folder to copy into; train's --force resumes with a changed config; a
        # sweep names its trial files itself
        if "--force" in options and path not in (("config", "cp"), ("train",), ("sweep",)):
            assert any(action.type is output_file for action in parser._actions), " ".join(path)
            checked += 1
    assert checked >= len(WRITERS)


def _count_options():
    """(command, option) for every option typed as a count, found by walking the parser."""
    from grpolab.cli.common import count, positive_int

    def walk(parser, path=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, (*path, name))
            elif action.type in (count, positive_int) and action.option_strings:
                yield path, action.option_strings[-1]

    return sorted(set(walk(build_parser())))


@pytest.mark.parametrize("value", ["9" * 20, str(2**63), "-1", "1.5", "9" * 5000])
def test_every_count_option_refuses_what_is_not_a_count_in_range(capsys, value):
    options = _count_options()
    assert len(options) >= 10
    for path, option in options:
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([*path, f"{option}={value}"])
        assert info.value.code == 2, (path, option)
        err = capsys.readouterr().err
        assert f"argument {option}" in err or option in err, err
        assert "expected a whole number from" in err and len(err) < 2000, err
