"""Every record file of a run x every way it can be damaged x every command that reads runs:
never a traceback, exit 0 or 2. A run with a bad field is still listed, with the field named.
Found by a probe: `git.commit: 12` broke `runs list` for the whole folder (TypeError), and random
bytes in resolved_config.yaml were a UnicodeDecodeError in `runs show` and `compare`."""

from __future__ import annotations

import json
import random

import pytest
from test_stats_seeds import fake_run

from grpolab.cli.main import main
from grpolab.config.yaml_io import dump_yaml
from grpolab.run.record import RunInfo, Summary

FILES = ["run_info.json", "summary.json", "metrics.jsonl", "resolved_config.yaml", "checkpoint-3/trainer_state.json"]
WRONG = ["x", 12345, -3, 1.5, True, None, [1, "x"], {"a": "b"}]


@pytest.fixture(autouse=True)
def in_tmp(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)


def _runs(folder):
    """Two seed runs of one setting, each with every record a finished run has."""
    runs = [fake_run(folder, f"s{seed}", 1e-4, seed, [0.1, 0.2, 0.3]) for seed in (1, 2)]
    for run in runs:
        info = json.loads((run / "run_info.json").read_text())
        info |= {"git": {"commit": "0123456789ab", "dirty": True}, "host": {"hostname": "h", "cpu_count": 2}}
        info |= {"command": ["grpolab", "train"], "guard": {"stopped": {"kind": "k"}}, "dataset": {"rows": 8}}
        info |= {"origins": {"training.seed": "--set"}, "world_size": 1, "pid": 1, "resumed": ["2026-01-01"]}
        (run / "run_info.json").write_text(json.dumps(info))
        summary = json.loads((run / "summary.json").read_text())
        summary |= {"eval": {"accuracy_before": 0.1, "accuracy_after": 0.2}, "global_step": 3, "train_seconds": 1.0}
        (run / "summary.json").write_text(json.dumps(summary))
        (run / "checkpoint-3").mkdir()
        state = {"global_step": 3, "max_steps": 3, "epoch": 0.5, "log_history": [{"loss": 0.1, "step": 3}]}
        (run / "checkpoint-3" / "trainer_state.json").write_text(json.dumps(state))
    return runs


def _leaves(node, path=()):
    """The path of every value in a JSON document, containers included."""
    if path:
        yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _leaves(value, (*path, key))


def _replace(node, path, value):
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _corruptions(run):
    """(label, file, new bytes) for every damage of every record file of `run`."""
    rng = random.Random(0)
    for file in FILES:
        raw = (run / file).read_bytes()
        yield f"{file}:truncated", file, raw[: len(raw) // 2]
        yield f"{file}:random bytes", file, rng.randbytes(200)
        yield f"{file}:not UTF-8", file, raw[:10] + b"\xff\xfe\xc0" + raw[10:]
        lines = raw.decode().splitlines()
        docs = [json.loads(line) for line in lines] if file == "metrics.jsonl" else None
        if file == "resolved_config.yaml":
            import yaml

            docs = [yaml.safe_load(raw)]
        elif docs is None:
            docs = [json.loads(raw)]
        for i, doc in enumerate(docs):
            for path in _leaves(doc):
                for value in WRONG:
                    changed = json.loads(json.dumps(doc))
                    _replace(changed, path, value)
                    text = (
                        dump_yaml(changed)
                        if file == "resolved_config.yaml"
                        else "\n".join(json.dumps(d) for d in (*docs[:i], changed, *docs[i + 1 :]))
                    )
                    yield f"{file}:{'.'.join(map(str, path))}={value!r}", file, text.encode()


def test_no_damage_to_a_record_breaks_a_command(tmp_path, capsys):
    folder = tmp_path / "runs"
    bad, good = _runs(folder)
    pristine = {file: (bad / file).read_bytes() for file in FILES}
    failures, tried = [], 0
    for label, file, data in _corruptions(bad):
        (bad / file).write_bytes(data)
        commands = [["runs", "list", str(folder)], ["runs", "show", str(bad)], ["doctor", str(bad)]]
        if tried % 5 == 0:  # compare draws a plot (slow): every fifth damage
            commands.append(["compare", str(bad), str(good), "--out", str(tmp_path / "c.png")])
        tried += 1
        for argv in commands:
            try:
                code = main(argv)
            except Exception as exc:  # noqa: BLE001 - what is asserted is that none escapes
                failures.append(f"{label}: {' '.join(argv[:2])}: {type(exc).__name__}: {exc}"[:300])
                continue
            out = capsys.readouterr()
            if code not in (0, 2):
                failures.append(f"{label}: {' '.join(argv[:2])}: exit {code}: {out.err[-200:]}")
        (bad / file).write_bytes(pristine[file])
    assert tried > 400 and not failures, f"{len(failures)} of {tried}:\n" + "\n".join(failures[:20])


@pytest.mark.parametrize(
    ("file", "dotted"),
    [
        *[("run_info.json", f"{o}.{k}") for o, keys in RunInfo.NESTED.items() for k in keys],
        *[("summary.json", f"{o}.{k}") for o, keys in Summary.NESTED.items() for k in keys],
    ],
)
def test_a_wrong_nested_field_is_named_and_the_run_still_listed(file, dotted, tmp_path, capsys):
    folder = tmp_path / "runs"
    bad, _ = _runs(folder)
    data = json.loads((bad / file).read_text())
    outer, key = dotted.split(".")
    data.setdefault(outer, {})[key] = [12]  # fits none of them
    (bad / file).write_text(json.dumps(data))
    assert main(["runs", "list", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"unreadable {bad}: {file}: `{dotted}` should be" in out
    assert out.count("s1") >= 2 and "s2" in out  # both runs listed, the bad one named
    assert main(["runs", "show", str(bad)]) == 0 and "unreadable" in capsys.readouterr().out


def test_random_bytes_in_a_resolved_config_are_named_and_the_run_compared(tmp_path, capsys):
    bad, good = _runs(tmp_path / "runs")
    (bad / "resolved_config.yaml").write_bytes(random.Random(1).randbytes(300) + b"\xff")
    assert main(["runs", "show", str(bad)]) == 0
    assert main(["compare", str(bad), str(good), "--out", str(tmp_path / "c.png")]) == 0
    err = capsys.readouterr().err
    assert f"unreadable {bad}: {bad / 'resolved_config.yaml'}" in err and "not valid UTF-8" in err, err


@pytest.mark.parametrize("out", ["", " ", "DIR/", "new/", "x.png/"])
def test_compare_out_that_names_no_file_is_refused_before_comparing(out, tmp_path, capsys):
    """Empty, or ending in / (a folder): the command line's own check (cli/common.output_file)."""
    run, _ = _runs(tmp_path / "runs")
    with pytest.raises(SystemExit) as info:
        main(["compare", str(run), "--out", out])
    captured = capsys.readouterr()
    assert info.value.code == 2 and captured.out == "", captured.out  # nothing compared or printed
    assert "is empty" in captured.err or "ends in /, so it names a folder" in captured.err, captured.err


@pytest.mark.parametrize("out", [".", "/", "DIR"])
def test_compare_out_that_is_no_file_is_refused_with_one_that_works(out, tmp_path, capsys):
    run, _ = _runs(tmp_path / "runs")
    (tmp_path / "DIR").mkdir()
    assert main(["compare", str(run), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: cannot write:") and "Fix: give an image file" in err
    fixed = err.split("e.g. --out ", 1)[1].split()[0]
    if out != "/":  # the printed fix works (not tried in /)
        assert main(["compare", str(run), "--out", fixed]) == 0 and (tmp_path / fixed).is_file()
