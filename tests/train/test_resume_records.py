"""`--resume` reads a run's records through the typed readers before it writes anything: a wrong
type in any field of trainer_state.json, run_info.json, summary.json or metrics.jsonl is an exit-2
error naming the file and field, and the run directory stays byte-for-byte as it was. Before,
`"global_step": "x"` in the checkpoint's trainer_state.json was transformers' TypeError mid-resume,
after run_info.json had been rewritten as failed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import pytest
from conftest import fast_settings

from grpolab.config import ConfigError
from grpolab.run import metrics
from grpolab.run.record import RunInfo, Summary, TrainerState, fits
from grpolab.train import resume

# A trainer_state.json as transformers 5 writes it (from a real 3-step run of the demo).
STATE = {
    "best_global_step": None,
    "best_metric": None,
    "best_model_checkpoint": None,
    "epoch": 0.003694581280788177,
    "eval_steps": 500,
    "global_step": 3,
    "is_hyper_param_search": False,
    "is_local_process_zero": True,
    "is_world_process_zero": True,
    "log_history": [],
    "logging_steps": 50,
    "max_steps": 3,
    "num_input_tokens_seen": 1793,
    "num_train_epochs": 1,
    "save_steps": 500,
    "stateful_callbacks": {"TrainerControl": {"args": {"should_save": True}, "attributes": {}}},
    "total_flos": 0.0,
    "train_batch_size": 64,
    "trial_name": None,
    "trial_params": None,
}
WRONG = ["x", [1, "x"], {"a": "b"}, True, None, -1, 1.5]


def _run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint-3").mkdir(parents=True)
    (run / "checkpoint-3" / "trainer_state.json").write_text(json.dumps(STATE))
    (run / "checkpoint-3" / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    info = {
        "run_name": "run",
        "git": {"commit": "abc", "dirty": False},
        "host": {"hostname": "h"},
        "guard": {"stopped": None},
        "dataset": {"rows": 8},
        "world_size": 1,
        "status": "finished",
        "global_step": 3,
        "resumed": [],
    }
    (run / "run_info.json").write_text(json.dumps(info))
    summary = {"final": {"reward": 0.5}, "best": {"reward": 0.5}, "steps": 3, "global_step": 3, "eval": {}}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "epoch": 0.1, "reward": 0.5}) + "\n" for s in (1, 2, 3))
    )
    (run / "resolved_config.yaml").write_text("mode: local\ntraining:\n  max_steps: 3\n")
    return run


def _digest(folder) -> str:
    hashes = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        hashes.update(str(path.relative_to(folder)).encode() + (path.read_bytes() if path.is_file() else b"/"))
    return hashes.hexdigest()


def _fields(record) -> list[tuple[str, str]]:
    return [(f.name, f.type) for f in dataclasses.fields(record) if f.name not in ("extra", "unreadable")]


# (file, dotted field, annotation): every typed field and nested key of every record resume reads
CASES = [
    *[("checkpoint-3/trainer_state.json", name, kind) for name, kind in _fields(TrainerState)],
    *[("run_info.json", name, kind) for name, kind in _fields(RunInfo)],
    *[
        ("run_info.json", f"{outer}.{key}", kind)
        for outer, keys in RunInfo.NESTED.items()
        for key, kind in keys.items()
    ],
    *[("summary.json", name, kind) for name, kind in _fields(Summary)],
    *[
        ("summary.json", f"{outer}.{key}", kind)
        for outer, keys in Summary.NESTED.items()
        for key, kind in keys.items()
    ],
    *[("metrics.jsonl", name, kind) for name, kind in metrics.TYPED.items()],
]


def _set(run, file: str, dotted: str, value) -> None:
    path = run / file
    if file == "metrics.jsonl":
        lines = path.read_text().splitlines()
        record = json.loads(lines[1])
        record[dotted] = value
        lines[1] = json.dumps(record)
        path.write_text("\n".join(lines) + "\n")
        return
    data = json.loads(path.read_text())
    *outer, key = dotted.split(".")
    node = data
    for name in outer:
        node = node.setdefault(name, {})
    node[key] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("file", "name", "kind"), CASES, ids=[f"{f}:{n}" for f, n, _ in CASES])
def test_a_wrong_type_anywhere_is_exit_2_and_changes_nothing(file, name, kind, tmp_path, train):
    wrong = [v for v in WRONG if not fits(v, kind) and not (name == "step" and v == -1)]
    assert wrong, f"no wrong value for {file}:{name} ({kind})"
    for i, value in enumerate(wrong):
        run = _run(tmp_path / str(i))
        _set(run, file, name, value)
        before = _digest(run)
        done = train("--resume", run, "--set", "training.max_steps=4")
        assert done.code == 2, (value, done)
        assert "Traceback" not in done.err and "cannot resume" in done.err
        assert file.rsplit("/", 1)[-1] in done.err and f"`{name}`" in done.err and "Fix:" in done.err, done.err
        assert _digest(run) == before, value


def test_the_printed_fixes_make_the_run_resumable(tmp_path):
    """run_info.json: deleting the field; trainer_state.json: deleting that checkpoint (the one
    before is used), or restoring the value."""
    run = _run(tmp_path)
    _set(run, "run_info.json", "git.commit", 12)
    with pytest.raises(ConfigError, match="delete it from the file"):
        resume.check_records(run)
    info = json.loads((run / "run_info.json").read_text())
    del info["git"]["commit"]
    (run / "run_info.json").write_text(json.dumps(info))
    resume.check_records(run)

    shutil.copytree(run / "checkpoint-3", run / "checkpoint-2")
    _set(run, "checkpoint-3/trainer_state.json", "global_step", "x")
    with pytest.raises(ConfigError, match="delete checkpoint-3 to resume from the checkpoint before it"):
        resume.check_records(run)
    shutil.rmtree(run / "checkpoint-3")
    resume.check_records(run)
    _set(run, "checkpoint-2/trainer_state.json", "global_step", "2")
    with pytest.raises(ConfigError):
        resume.check_records(run)
    _set(run, "checkpoint-2/trainer_state.json", "global_step", 2)
    resume.check_records(run)


CALLBACKS = [{"TrainerControl": {"args": "x"}}, {"TrainerControl": [{"args": {}, "attributes": 3}]}, {"A": "b"}]


@pytest.mark.parametrize(
    "text",
    ["[]", '"state"', json.dumps({**STATE, "not_a_key": 1})]
    + [json.dumps({**STATE, "stateful_callbacks": value}) for value in CALLBACKS],
)
def test_a_trainer_state_transformers_would_refuse_is_named(text, tmp_path):
    run = _run(tmp_path)
    (run / "checkpoint-3" / "trainer_state.json").write_text(text)
    with pytest.raises(ConfigError, match="trainer_state.json"):
        resume.check_records(run)


def test_the_probe_example_on_a_real_run(tiny_gpt2, tmp_path, train, write_config):
    config = write_config(fast_settings(tiny_gpt2, tmp_path / "runs", {"training": {"max_steps": 2}}))
    first = train("--config", config)
    assert first.code == 0, first
    run = first.run_dir
    _set(run, "checkpoint-2/trainer_state.json", "global_step", "x")
    before = _digest(run)
    done = train("--resume", run, "--set", "training.max_steps=4")
    assert done.code == 2 and "`global_step` should be a whole number >= 0, got 'x'" in done.err, done
    assert _digest(run) == before and json.loads((run / "run_info.json").read_text())["status"] == "finished"
