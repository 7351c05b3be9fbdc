"""Every edit of a config file keeps what the user had (issue 21 probe findings): its line endings,
whichever way it is edited or written, and a `# Changed from` mark that names the value the file
had before any edit, however many edits follow."""

from __future__ import annotations

import pytest

from grpolab.cli.main import main
from grpolab.config import GRPOConfigLoader
from grpolab.config.keys import flatten
from grpolab.config.yaml_edit import CHANGED

SOURCE = (
    "mode: local  # the mode\n"
    "# about training\n"
    "training:\n"
    "  learning_rate: 1.0e-5  # lr\n"
    "\n"
    "  # about steps\n"
    "  max_steps: 4\n"
    "grpo:\n"
    "  beta: 0.0\n"
    "# the end\n"
)


def _set(src, out):
    return main(["config", "set", str(src), "training.learning_rate=2e-5", "-o", str(out), "--force"])


def _set_in_place(src, out):
    return main(["config", "set", str(src), "training.learning_rate=2e-5"])


def _minimize(src, out):
    return main(["config", "minimize", str(src), "-o", str(out), "--force"])


def _minimize_in_place(src, out):
    return main(["config", "minimize", str(src)])


def _save(src, out):
    loader = GRPOConfigLoader(config_path=src)
    loader.update_param("grpo.beta", 0.02)
    loader.save_config(out, overwrite=True)
    return 0


def _save_in_place(src, out):
    return _save(src, src)


EDITS = {
    "set -o": (_set, True),
    "set": (_set_in_place, False),
    "minimize -o": (_minimize, True),
    "minimize": (_minimize_in_place, False),
    "save_config(new path)": (_save, True),
    "save_config(same file)": (_save_in_place, False),
}


@pytest.mark.parametrize("ending", ["\r\n", "\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_every_edit_keeps_the_files_line_endings(tmp_path, monkeypatch, edit, ending):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "mine.yaml"
    src.write_bytes(SOURCE.replace("\n", ending).encode())
    run, other_file = EDITS[edit]
    out = tmp_path / "out.yaml" if other_file else src
    assert run(src, out) == 0
    raw = out.read_bytes()
    assert raw.count(b"\n") > 3
    if ending == "\r\n":
        assert raw.count(b"\r\n") == raw.count(b"\n"), raw
    else:
        assert b"\r" not in raw, raw


# Scalar keys of the file above, and three successive values for each.
STEPS = {
    "training.learning_rate": [2.0e-5, 3.0e-5, 4.0e-5],
    "training.max_steps": [5, 6, 7],
    "grpo.beta": [0.01, 0.02, 0.05],
    "mode": ["cluster", "local", "cluster"],
    "generation.temperature": [0.9, 0.8, 0.7],  # not in the file: its original is the schema default
}


@pytest.mark.parametrize("key", sorted(STEPS))
def test_changed_from_names_the_original_value_through_several_edits(tmp_path, key):
    path = tmp_path / "mine.yaml"
    path.write_text(SOURCE)
    original = flatten(GRPOConfigLoader(config_path=path).to_dict())[key]
    from grpolab.config.yaml_io import inline_yaml

    name = key.rpartition(".")[2]
    for value in STEPS[key]:
        assert main(["config", "set", str(path), f"{key}={inline_yaml(value)}"]) == 0
        line = next(ln for ln in path.read_text().splitlines() if ln.strip().startswith(f"{name}:"))
        if value == original:
            assert CHANGED not in line, line
        else:
            assert f"{CHANGED}{inline_yaml(original)}" in line, line
    # Back to the original value: the mark goes, the key's own comment stays.
    assert main(["config", "set", str(path), f"{key}={inline_yaml(original)}"]) == 0
    line = next(ln for ln in path.read_text().splitlines() if ln.strip().startswith(f"{name}:"))
    assert CHANGED not in line
    if key == "training.learning_rate":
        assert line.endswith("  # lr")
