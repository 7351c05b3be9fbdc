"""`grpolab config show|validate|explain|diff|set`: output, exit codes (0 ok, 2 invalid),
no tracebacks, nothing written unless asked, and no torch/transformers/trl import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from grpolab.cli.main import main
from grpolab.config import GRPOConfigLoader
from grpolab.config.derive import derive

REPO = Path(__file__).resolve().parents[2]
LOCAL = str(REPO / "configs" / "grpo_local.yaml")
CLUSTER = str(REPO / "configs" / "grpo_cluster.yaml")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def parse(text: str):
    return YAML(typ="safe").load(text)


def explain_rows(out: str) -> dict[str, str]:
    """`label  value  note` rows of the explain table -> {label: value}."""
    rows = {}
    for line in out.splitlines()[1:]:
        parts = [p for p in line.strip().split("  ") if p.strip()]
        if len(parts) >= 2:
            rows[parts[0].strip()] = parts[1].strip()
    return rows


# ----------------------------------------------------------------------------- show
def test_show_prints_the_resolved_config(capsys):
    code, out, err = run(capsys, "config", "show")
    assert code == 0 and err == ""
    assert parse(out) == GRPOConfigLoader().to_dict()


def test_show_layers(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("training:\n  learning_rate: 1.0e-5\ngrpo:\n  beta: 0.05\n")
    code, out, _ = run(
        capsys,
        "config",
        "show",
        "--mode",
        "cluster",
        "--config",
        str(exp),
        "--set",
        "grpo.beta=0.02",
        "--set",
        "generation.temperature=0.7",
    )
    assert code == 0
    shown = parse(out)
    assert (
        shown
        == GRPOConfigLoader(
            mode="cluster", config_path=exp, overrides=["grpo.beta=0.02", "generation.temperature=0.7"]
        ).to_dict()
    )
    assert shown["mode"] == "cluster"
    assert shown["training"]["learning_rate"] == 1e-5
    assert shown["grpo"]["beta"] == 0.02
    assert shown["generation"]["temperature"] == 0.7
    assert shown["training"]["per_device_train_batch_size"] == 8
    assert "learning_rate: 1.0e-5" in out  # floats in the presets' style


def test_show_prints_warnings_on_stderr(capsys):
    code, out, err = run(capsys, "config", "show", "--set", "training.learning_rate=1e-2")
    assert code == 0
    assert "warning:" in err and "training.learning_rate" in err and "recommended range" in err
    assert parse(out)["training"]["learning_rate"] == 0.01


def test_show_invalid_exits_2(capsys):
    code, out, err = run(capsys, "config", "show", "--set", "grpo.bta=0.1")
    assert code == 2 and out == ""
    assert "Did you mean `beta`?" in err


# ----------------------------------------------------------------------------- validate
def test_validate_presets(capsys):
    code, out, err = run(capsys, "config", "validate", LOCAL, CLUSTER)
    assert code == 0 and err == ""
    assert f"{LOCAL}: ok (mode local, world size 1)" in out
    assert f"{CLUSTER}: ok (mode cluster, world size 1)" in out


@pytest.mark.parametrize("world_size", [1, 2, 4, 8])
def test_validate_cluster_for_world_sizes(world_size, capsys):
    code, out, _ = run(capsys, "config", "validate", CLUSTER, "--world-size", str(world_size))
    assert code == 0 and f"world size {world_size})" in out


def test_validate_world_size_problem(capsys):
    code, out, err = run(capsys, "config", "validate", LOCAL, "--world-size", "3")
    assert code == 2 and out == ""
    assert "(world size 3)" in err and "set `grpo.generation_batch_size: 24`" in err


def test_validate_reports_all_problems_of_a_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  lerning_rate: 1.0e-4\n  seed: abc\ngrpo:\n  beta: -1\n")
    code, _, err = run(capsys, "config", "validate", str(bad))
    assert code == 2
    assert "(3 problems)" in err
    assert f"{bad}:2: training.lerning_rate" in err
    assert f"{bad}:3: training.seed" in err
    assert f"{bad}:5: grpo.beta" in err


def test_validate_warning_is_still_valid(tmp_path, capsys):
    path = tmp_path / "w.yaml"
    path.write_text("grpo:\n  beta: 0.5\n")
    code, out, err = run(capsys, "config", "validate", str(path))
    assert code == 0 and ": ok" in out
    assert "warning:" in err and "grpo.beta" in err


def test_validate_partial_file_uses_its_modes_preset(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("mode: cluster\ntraining:\n  learning_rate: 1.0e-4\n")
    code, out, _ = run(capsys, "config", "validate", str(path))
    assert code == 0 and "ok (mode cluster" in out


def test_validate_needs_a_file(capsys):
    with pytest.raises(SystemExit) as info:
        main(["config", "validate"])
    assert info.value.code == 2


# ----------------------------------------------------------------------------- explain
@pytest.mark.parametrize("world_size", [1, 2, 4, 8])
@pytest.mark.parametrize("accumulation", [1, 4])
def test_explain_effective_batch_size(world_size, accumulation, capsys):
    code, out, err = run(
        capsys,
        "config",
        "explain",
        "--mode",
        "cluster",
        "--world-size",
        str(world_size),
        "--set",
        f"training.gradient_accumulation_steps={accumulation}",
    )
    assert code == 0 and err == ""
    rows = explain_rows(out)
    assert rows["effective batch size"] == f"{8 * accumulation * world_size} = 8 x {accumulation} x {world_size}"
    assert rows["world size"] == str(world_size)
    assert rows["completions per round"] == str(8 * accumulation * world_size)
    assert rows["unique prompts per round"] == str(accumulation * world_size)


@pytest.mark.parametrize("world_size", [1, 2, 4, 8])
def test_explain_cluster_preset(world_size, capsys):
    code, out, _ = run(capsys, "config", "explain", "--mode", "cluster", "--world-size", str(world_size))
    assert code == 0
    assert out.startswith("grpo_cluster.yaml (mode cluster)")
    rows = explain_rows(out)
    assert rows["effective batch size"] == f"{8 * world_size} = 8 x 1 x {world_size}"
    assert rows["on-policy"] == "yes"
    assert rows["KL tracked"] == "yes" and rows["reference model loaded"] == "yes"


def test_explain_json_matches_derived(capsys):
    code, out, _ = run(
        capsys, "config", "explain", "--mode", "cluster", "--world-size", "4", "--dataset-size", "1000", "--json"
    )
    assert code == 0
    loader = GRPOConfigLoader(mode="cluster", world_size=4)
    shown = json.loads(out)
    assert shown.pop("runtime")["world_size"] == 4
    assert shown == derive(loader.config, 4, 1000).to_dict()
    assert shown["optimizer_steps_per_epoch"] == 250


def test_explain_local_with_config_and_dataset(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("grpo:\n  beta: 0.0\ntraining:\n  num_train_epochs: 2\n")
    code, out, _ = run(capsys, "config", "explain", "--config", str(path), "--dataset-size", "100")
    assert code == 0
    assert out.startswith(f"{path} (mode local)")
    rows = explain_rows(out)
    assert rows["effective batch size"] == "1 = 1 x 1 x 1"
    assert rows["steps per generation"] == "8" and rows["on-policy"] == "no"
    assert rows["KL tracked"] == "no" and rows["reference model loaded"] == "no"
    assert rows["optimizer steps per epoch"] == "800"
    assert rows["total optimizer steps"] == "1600"


def test_explain_invalid_world_size(capsys):
    code, out, err = run(capsys, "config", "explain", "--world-size", "3")
    assert code == 2 and out == "" and "(world size 3)" in err
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as info:
            main(["config", "explain", "--world-size", bad])
        assert info.value.code == 2
        assert "expected a whole number from 1 to 2**63 - 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- diff
def test_diff_presets(capsys):
    code, out, err = run(capsys, "config", "diff", LOCAL, CLUSTER)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["key", LOCAL, "->", CLUSTER]
    changed = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert changed["mode"] == ["local", "->", "cluster"]
    assert changed["training.per_device_train_batch_size"] == ["1", "->", "8"]
    assert changed["training.learning_rate"] == ["5.0e-5", "->", "3.0e-5"]
    assert changed["grpo.generation_batch_size"] == ["8", "->", "auto"]
    assert "grpo.beta" not in changed and "grpo.num_generations" not in changed


def test_diff_same_resolved_config(tmp_path, capsys):
    partial = tmp_path / "p.yaml"
    partial.write_text("mode: cluster\ngrpo:\n  beta: 0.01  # same as the preset\n")
    code, out, _ = run(capsys, "config", "diff", CLUSTER, str(partial))
    assert code == 0 and out.strip() == "no differences in the resolved configs"


def test_diff_invalid_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo:\n  bta: 0.1\n")
    code, out, err = run(capsys, "config", "diff", LOCAL, str(bad))
    assert code == 2 and out == "" and "Did you mean `beta`?" in err


# ----------------------------------------------------------------------------- set
def test_set_in_place(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("# my experiment\ngrpo:\n  beta: 0.01  # KL penalty coefficient\n")
    code, out, _ = run(capsys, "config", "set", str(path), "grpo.beta=0.05", "training.learning_rate=1e-4")
    assert code == 0 and f"wrote {path}" in out
    text = path.read_text()
    assert text.startswith("# my experiment\n")
    assert "beta: 0.05  # Changed from 0.01  # KL penalty coefficient" in text
    assert "learning_rate: 1.0e-4  # Changed from 5.0e-5" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


def test_set_to_output_keeps_source(tmp_path, capsys):
    source = Path(CLUSTER).read_bytes()
    out_path = tmp_path / "grpo_cluster_experiment1.yaml"
    code, _, _ = run(
        capsys, "config", "set", CLUSTER, "training.learning_rate=1e-4", "grpo.beta=0.05", "-o", str(out_path)
    )
    assert code == 0
    assert Path(CLUSTER).read_bytes() == source
    text = out_path.read_text()
    assert "learning_rate: 1.0e-4  # Changed from 3.0e-5" in text
    assert "# GRPO Specific Parameters" in text
    assert run(capsys, "config", "validate", str(out_path))[0] == 0


def test_set_refuses_to_overwrite_output_without_force(tmp_path, capsys):
    out_path = tmp_path / "out.yaml"
    out_path.write_bytes(b"grpo:\n  beta: 0.02\n")
    code, _, err = run(capsys, "config", "set", LOCAL, "grpo.beta=0.05", "-o", str(out_path))
    assert code == 2 and "refusing to overwrite" in err and "--force" in err
    assert out_path.read_bytes() == b"grpo:\n  beta: 0.02\n"
    code, _, _ = run(capsys, "config", "set", LOCAL, "grpo.beta=0.05", "-o", str(out_path), "--force")
    assert code == 0
    assert GRPOConfigLoader(config_path=out_path).get_param("grpo.beta") == 0.05


@pytest.mark.parametrize(
    "assignment, fragment",
    [
        ("grpo.bta=0.05", "Did you mean `beta`?"),
        ("grpo.generation_batch_size=12", "must be divisible by grpo.num_generations = 8"),
        ("training.learning_rate=fast", "valid number"),
        ("grpo.beta", "is not of the form KEY=VALUE"),
    ],
)
def test_set_invalid_changes_nothing(tmp_path, capsys, assignment, fragment):
    path = tmp_path / "exp.yaml"
    original = b"grpo:\n  beta: 0.01  # KL\n"
    path.write_bytes(original)
    code, out, err = run(capsys, "config", "set", str(path), "grpo.beta=0.05", assignment)
    assert code == 2 and out == "" and fragment in err
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


# ----------------------------------------------------------------------------- no heavy imports
def test_config_commands_do_not_import_torch_transformers_trl(tmp_path):
    code = textwrap.dedent(
        f"""
        import contextlib, io, sys
        from grpolab.cli.main import main
        runs = [
            ["config", "show", "--mode", "cluster", "--set", "grpo.beta=0.02"],
            ["config", "validate", {CLUSTER!r}, {LOCAL!r}],
            ["config", "explain", "--mode", "cluster", "--world-size", "8", "--dataset-size", "1000"],
            ["config", "explain", "--json"],
            ["config", "diff", {LOCAL!r}, {CLUSTER!r}],
            ["config", "set", {CLUSTER!r}, "grpo.beta=0.05", "-o", {str(tmp_path / "x.yaml")!r}],
            ["config", "validate", {str(tmp_path / "missing.yaml")!r}],
            ["config", "schema"],
            ["config", "keys", "lr"],
            ["config", "explain", "--key", "training.bf16", "--mode", "cluster"],
            ["config", "show", "--origins"],
            ["config", "new", {str(tmp_path / "n.yaml")!r}, "--from", "cluster", "--set", "grpo.beta=0.02"],
            ["config", "minimize", {str(tmp_path / "x.yaml")!r}, "-o", {str(tmp_path / "m.yaml")!r}],
            ["config", "ls"],
            ["config", "cp", "cluster", {str(tmp_path / "c.yaml")!r}],
        ]
        codes = []
        for argv in runs:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                codes.append(main(argv))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "trl"))
        print(codes, heavy)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0] []"


def test_cli_entry_point_in_a_subprocess(tmp_path):
    """`python -m grpolab.cli.main config validate`, as a user runs it: exit codes and streams."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ok = subprocess.run(
        [sys.executable, "-m", "grpolab.cli.main", "config", "validate", CLUSTER],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert ok.returncode == 0 and "ok (mode cluster" in ok.stdout and ok.stderr == ""
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [\n")
    fail = subprocess.run(
        [sys.executable, "-m", "grpolab.cli.main", "config", "validate", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert fail.returncode == 2 and "Traceback" not in fail.stderr and "YAML error" in fail.stderr


def test_explain_shows_every_runtime_decision_and_the_key_that_overrides_it(capsys, monkeypatch):
    from grpolab.runtime import hardware
    from grpolab.runtime.hardware import HardwareFacts

    monkeypatch.setattr(hardware, "probe", lambda use_torch=True: HardwareFacts(cores=16, cpu_bf16=False))
    code, out, _ = run(capsys, "config", "explain", "--mode", "cluster", "--world-size", "8", "--json")
    assert code == 0
    decided = {d["label"]: d for d in json.loads(out)["runtime"]["decisions"]}
    assert decided["precision"]["value"] == "fp32" and "no native bf16" in decided["precision"]["reason"]
    assert decided["gradient checkpointing"]["value"] == "on"
    assert (
        decided["Liger kernels"]["value"] == "off"
        and "needs liger-kernel and a GPU" in decided["Liger kernels"]["reason"]
    )
    assert decided["generation"]["value"] == "transformers" and "vLLM needs a GPU" in decided["generation"]["reason"]
    assert decided["CPU threads per process"]["value"] == "2"  # 16 cores / 8 processes on one machine
    code, text, _ = run(capsys, "config", "explain", "--mode", "cluster", "--world-size", "8")
    for d in decided.values():  # the table prints the same decisions, each with its key
        assert f"{d['value']}" in text and f"({d['key']})" in text

    code, out, _ = run(
        capsys,
        "config",
        "explain",
        "--json",
        "--set",
        "training.gradient_checkpointing=true",
        "--set",
        "training.use_liger_kernel=false",
        "--set",
        "cluster.threads_per_process=3",
        "--set",
        "training.bf16=true",
    )
    decided = {d["label"]: d["value"] for d in json.loads(out)["runtime"]["decisions"]}
    assert (
        decided["gradient checkpointing"],
        decided["Liger kernels"],
        decided["CPU threads per process"],
        decided["precision"],
        decided["generation"],
    ) == ("on", "off", "3", "bf16 autocast", "transformers")


@pytest.mark.parametrize(
    "argv", [["config", "keys"], ["config", "schema"], ["config", "explain", "--key", "training"]]
)
def test_a_reader_that_leaves_early_is_no_traceback(argv, subprocess_env):
    """`grpolab ... | head -1`: the pipe closes under the command; it ends quietly (141, as a shell
    reports SIGPIPE, or its own code), never with a BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader has already gone
    done = subprocess.run(
        [sys.executable, "-m", "grpolab", *argv], stdout=write, stderr=subprocess.PIPE, env=subprocess_env, text=True
    )
    os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr[-2000:]
    assert done.returncode in (0, 2, 141)


def test_ls_and_cp_list_what_the_users_configs_folder_holds_whatever_it_is(tmp_path, monkeypatch, capsys):
    """./configs is the user's: a copied checkout leaves the presets' relative links dangling, and a
    folder or a fifo may be named *.yaml. Each kind is listed as what it is; cp still works."""
    import os

    from grpolab.cli.main import main

    monkeypatch.chdir(tmp_path)
    local = tmp_path / "configs"
    local.mkdir()
    (local / "mine.yaml").write_text("# my run\nmode: local\n")
    (local / "dangling.yaml").symlink_to("grpo_local.yaml")  # what `cp -r checkout/configs .` leaves
    (local / "folder.yaml").mkdir()
    (local / "loop.yaml").symlink_to("loop.yaml")
    os.mkfifo(local / "pipe.yaml")
    assert main(["config", "ls"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "my run" in rows["configs/mine.yaml"]
    for name in ("dangling", "folder", "loop", "pipe"):
        assert "example" in rows[f"configs/{name}.yaml"], rows
    assert "a dangling link" in rows["configs/dangling.yaml"] and "not a regular file" in rows["configs/pipe.yaml"]
    assert main(["config", "cp", "local", str(tmp_path / "copy.yaml")]) == 0
    assert "Copied from the grpolab preset grpo_local" in (tmp_path / "copy.yaml").read_text()


def test_ls_names_a_users_config_it_cannot_read(tmp_path, monkeypatch, capsys):
    """A regular file the OS refuses to read (permissions; root reads everything, so it is faked)."""
    from pathlib import Path

    from grpolab.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    locked = tmp_path / "configs" / "locked.yaml"
    locked.write_text("# mine\n")
    real_read = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "locked.yaml":
            raise PermissionError(13, "Permission denied")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    assert main(["config", "ls"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("configs/locked.yaml"))
    assert "(not readable: Permission denied)" in row
