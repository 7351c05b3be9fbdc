"""`grpolab config validate` takes `--mode` like `show` and `explain` (issue 21, section 3): a
partial file with no `mode:` is checked over the preset it will run with."""

from __future__ import annotations

from grpolab.cli.main import main


def test_validate_checks_a_partial_file_in_the_mode_given(tmp_path, capsys):
    path = tmp_path / "partial.yaml"
    path.write_text("grpo: {beta: 0.05}\n")
    for mode in ("local", "cluster"):
        assert main(["config", "validate", "--mode", mode, str(path)]) == 0
        assert f"{path}: ok (mode {mode}," in capsys.readouterr().out
    assert main(["config", "validate", "--mode", "bogus", str(path)]) == 2
    assert "`bogus` is not a mode; allowed: local, cluster" in capsys.readouterr().err
