"""Every command that reads a path the user names, given a link that leads nowhere (a loop, a
dangling link): a short error and exit 2, never Python's traceback (grpolab/cli/main.py)."""

from __future__ import annotations

import pytest

from grpolab.cli.main import main

# {p}: the broken link. Each command reads it as what it expects there (a config, a run, a sweep).
READERS = [
    ["config", "validate", "{p}"],
    ["config", "show", "--config", "{p}"],
    ["config", "explain", "--config", "{p}"],
    ["config", "diff", "{p}", "{p}"],
    ["config", "set", "{p}", "grpo.beta=0.1"],
    ["config", "minimize", "{p}", "-o", "out.yaml"],
    ["config", "import", "{p}"],
    ["config", "scale", "{p}", "--gpus", "8"],
    ["train", "--dry-run", "--config", "{p}"],
    ["train", "--resume", "{p}"],
    ["launch", "slurm", "--config", "{p}", "--nodes", "1", "--gpus-per-node", "8", "--model", "gpt2"],
    ["runs", "show", "{p}"],
    ["compare", "{p}", "{p}"],
    ["doctor", "{p}"],
    ["sweep", "{p}", "--dry-run"],
    ["probe", "{p}"],
]


@pytest.mark.parametrize("argv", READERS, ids=lambda argv: " ".join(a for a in argv[:3] if "{" not in a))
@pytest.mark.parametrize("link", ["self", "ring", "dangling"])
def test_a_link_that_leads_nowhere_is_a_clean_error(tmp_path, monkeypatch, capsys, argv, link):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "broken.yaml"
    if link == "self":
        path.symlink_to(path.name)
    elif link == "ring":
        path.symlink_to("other.yaml")
        (tmp_path / "other.yaml").symlink_to(path.name)
    else:
        path.symlink_to("nowhere.yaml")
    code = main([arg.format(p=path) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2 and "invalid config" in err and "Traceback" not in err, err
    assert str(path) in err or "broken.yaml" in err, err
    assert path.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) <= ["broken.yaml", "other.yaml"]
