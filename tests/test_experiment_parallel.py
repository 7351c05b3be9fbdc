"""`grpolab sweep --parallel N` and `--slurm`: runs at once on their own cores, separate run
directories, failures recorded, SLURM through an sbatch array (fake sbatch) and through
submitit's local executor, optuna pruning from metrics.jsonl while a trial runs, and one real
parallel sweep of the tiny model.

The fake `grpolab train` below keeps the sweep's contract with training (--config, the run
directory handed over in GRPOLAB_RUN_DIR) and writes a run directory like the pipeline's in a
fraction of a second, so sweeps of many runs stay fast."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from grpolab.cli.main import main
from grpolab.config import ConfigError
from grpolab.experiment.sweep import SbatchBackend, SlurmOptions, SubmititBackend, load_sweep, run_sweep, runner
from grpolab.experiment.sweep.backends import Unit, plan_slots, visible_gpus

# Writes run_info.json (with where it ran: CPU affinity, CUDA_VISIBLE_DEVICES, start/end time),
# resolved_config.yaml, metrics.jsonl (one record per step, `delay` seconds apart) and summary.json.
# reward = lr x 1000 + NOISE[seed] at every step. A config whose path contains FAIL exits CODE.
# SIGTERM (a pruned trial) ends it as interrupted with exit 143, as the pipeline does.
FAKE_TRAINER = r"""
import json, os, signal, sys, time
from pathlib import Path
from grpolab.config import GRPOConfigLoader
from grpolab.config.yaml_io import dump_yaml

assert sys.argv[1:3] == ["train", "--config"], sys.argv
config = sys.argv[3]
run_dir = Path(os.environ["GRPOLAB_RUN_DIR"])
loader = GRPOConfigLoader(config_path=config)
if FAIL and FAIL in config:
    sys.exit(CODE)
assert run_dir.is_dir() and run_dir.parent == Path(loader.config.output_dir).resolve()
cfg = loader.config
info = {
    "run_name": run_dir.name, "config_file": config, "status": "running", "started_at": time.time(),
    "affinity": sorted(os.sched_getaffinity(0)), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "pid": os.getpid(),
}
(run_dir / "resolved_config.yaml").write_text(dump_yaml(loader.to_dict()))
(run_dir / "run_info.json").write_text(json.dumps(info))

def stop(signum, frame):
    info.update(status="interrupted", global_step=step)
    (run_dir / "run_info.json").write_text(json.dumps(info))
    sys.exit(143)

records, step = [], 0
signal.signal(signal.SIGTERM, stop)
reward = cfg.training.learning_rate * 1000 + NOISE.get(cfg.training.seed, 0.0)
for step in range(1, STEPS + 1):
    time.sleep(DELAY)
    records.append({"step": step, "reward": reward + 0.01 * step, "kl": 0.1})
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps(records[-1]) + "\n")
final = records[-1]
(run_dir / "summary.json").write_text(json.dumps({"final": final, "best": final, "steps": STEPS}))
info.update(status="finished", global_step=STEPS, ended_at=time.time())
(run_dir / "run_info.json").write_text(json.dumps(info))
"""


def fake_trainer(folder: Path, fail: str = "", code: int = 1, steps: int = 3, delay: float = 0.0, noise=None) -> Path:
    script = folder / "fake_train.py"
    header = f"FAIL = {fail!r}\nCODE = {code}\nSTEPS = {steps}\nDELAY = {delay}\nNOISE = {dict(noise or {})!r}\n"
    script.write_text(header + FAKE_TRAINER)
    return script


def train_command(script: Path) -> list[str]:
    return [sys.executable, str(script), "train"]


# A fake `sbatch --parsable SCRIPT`: runs every array task of the script here, one after another,
# with SLURM_ARRAY_TASK_ID set, and prints a job id, as sbatch does once the job is queued.
FAKE_SBATCH = r"""#!/bin/bash
script="${@: -1}"
printf '%s\n' "$@" > "$FAKE_OUT/sbatch_args.txt"
cp "$script" "$FAKE_OUT/submitted.sbatch"
range=$(sed -n 's/^#SBATCH --array=\([0-9]*\)-\([0-9]*\).*/\1 \2/p' "$script")
read -r first last <<< "$range"
for ((i = first; i <= last; i++)); do
    SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_JOB_ID=77 bash "$script" > "$FAKE_OUT/task$i.out" 2>&1
done
echo 77
"""


def fake_slurm(folder: Path) -> Path:
    """A folder with fake sbatch, squeue (an empty queue) and scancel, for PATH."""
    bin_dir = folder / "fake_slurm"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "squeue").write_text("#!/bin/bash\nexit 0\n")
    (bin_dir / "scancel").write_text('#!/bin/bash\necho "$@" >> "$FAKE_OUT/scancel.txt"\n')
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


BASE = """\
# base config of the sweep tests
mode: local
output_dir: ./results
training:
  max_steps: 3
logging:
  report_to: [none]
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(BASE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def sweep_file(workdir: Path, text: str) -> Path:
    path = workdir / "sweep.yaml"
    path.write_text(text)
    return path


def record_of(workdir: Path, name: str) -> dict:
    records = list((workdir / "results").glob(f"sweep_{name}_*.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


TWO = "name: two\nbase: configs/base.yaml\nparameters:\n  training.learning_rate: [1.0e-4, 2.0e-4]\n"


# --------------------------------------------------------------------------- slots
def test_slots_share_out_gpus_and_cores():
    slots = plan_slots(2, None, ["0", "1", "2", "3"], list(range(8)))
    assert [s["gpus"] for s in slots] == [["0", "1"], ["2", "3"]]
    assert [s["cores"] for s in slots] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [s["gpus"] for s in plan_slots(2, 1, ["0", "1", "2"], [0, 1])] == [["0"], ["1"]]
    assert [s["gpus"] for s in plan_slots(2, None, [], [0, 1, 2])] == [[], []]  # CPU: no GPU for anyone
    with pytest.raises(ConfigError, match=r"--gpus-per-trial: 2 runs x 3 GPUs = 6 GPUs, but 4 are visible"):
        plan_slots(2, 3, ["0", "1", "2", "3"], list(range(8)))
    with pytest.raises(ConfigError, match=r"--parallel: 3 runs at once need at least 3 GPUs.*Fix: use --parallel 2"):
        plan_slots(3, None, ["0", "1"], list(range(8)))
    with pytest.raises(ConfigError, match=r"--parallel: 3 runs at once need a CPU core each; .* 2\..*--parallel 2"):
        plan_slots(3, 0, [], [0, 1])


def test_visible_gpus_are_what_exists_narrowed_by_cuda_visible_devices(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/bash\necho '0, GPU-aaa'\necho '1, GPU-bbb'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == ["0", "1"]
    for value, expected in (("1", ["1"]), ("GPU-bbb,0", ["GPU-bbb", "0"]), ("0,7,1", ["0"]), ("", []), ("-1", [])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        assert visible_gpus() == expected, value
    # No GPU on the machine: a CUDA_VISIBLE_DEVICES=0 left in the environment names none.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert visible_gpus() == []


# --------------------------------------------------------------------------- --parallel
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPU cores")
def test_two_trials_run_at_once_on_their_own_cores(workdir, monkeypatch, capsys):
    # 3 s of steps each: the two runs overlap even when one starts its interpreter much later.
    monkeypatch.setattr(runner, "TRAIN_COMMAND", train_command(fake_trainer(workdir, steps=3, delay=1.0)))
    assert main(["sweep", str(sweep_file(workdir, TWO)), "--parallel", "2"]) == 0
    out = capsys.readouterr().out
    trials = record_of(workdir, "two")["trials"]
    assert [t["status"] for t in trials] == ["finished", "finished"]
    run_dirs = [Path(t["run_dir"]).resolve() for t in trials]
    assert len(set(run_dirs)) == 2 and all(d.parent == workdir / "results" for d in run_dirs)
    assert [d.name.rsplit("_", 1)[0] for d in run_dirs] == ["base_lr1e-4", "base_lr2e-4"]
    infos = [json.loads((d / "run_info.json").read_text()) for d in run_dirs]
    # Each run's own config, its own cores (no core shared), no GPU, and both at the same time.
    assert [Path(i["config_file"]).name for i in infos] == ["base_lr1e-4.yaml", "base_lr2e-4.yaml"]
    assert all(i["affinity"] for i in infos) and not set(infos[0]["affinity"]) & set(infos[1]["affinity"])
    assert [i["cuda"] for i in infos] == ["", ""]
    assert infos[0]["started_at"] < infos[1]["ended_at"] and infos[1]["started_at"] < infos[0]["ended_at"]
    assert all((d / "output.log").is_file() for d in run_dirs)
    assert "2 runs at once on this machine (slot 1: cores" in out and "trial 2 finished" in out
    assert "sweep two: 2 trials, 2 finished" in out and "FINAL reward" in out


def test_a_failed_parallel_trial_is_recorded_and_the_others_go_on(workdir, monkeypatch, capsys):
    monkeypatch.setattr(runner, "TRAIN_COMMAND", train_command(fake_trainer(workdir, fail="lr1e-4", code=5)))
    text = TWO.replace("2.0e-4]", "2.0e-4, 3.0e-4]")
    assert main(["sweep", str(sweep_file(workdir, text)), "--parallel", "2"]) == 1
    out = capsys.readouterr().out
    trials = record_of(workdir, "two")["trials"]
    assert [(t["trial"], t["status"], t["exit_code"]) for t in trials] == [
        (1, "failed", 5),
        (2, "finished", 0),
        (3, "finished", 0),
    ]
    # The failed start wrote nothing but its output: no run directory, the log is kept.
    assert trials[0]["run_dir"] is None and Path(trials[0]["log"]).is_file()
    assert "trial 1 failed (exit 5); going on" in out


def test_parallel_bad_input_is_a_usage_error(workdir, capsys):
    path = sweep_file(workdir, TWO)
    cores = len(os.sched_getaffinity(0))
    assert main(["sweep", str(path), "--parallel", str(cores + 1)]) == 2
    assert f"--parallel: {cores + 1} runs at once need a CPU core each" in capsys.readouterr().err
    assert main(["sweep", str(path), "--partition", "gpu"]) == 2
    assert "--partition: applies to --slurm only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(path), "--parallel", "0"])
    assert exit_info.value.code == 2 and "expected a whole number >= 1, got 0" in capsys.readouterr().err
    assert not (workdir / "results").exists()  # nothing started


# --------------------------------------------------------------------------- --slurm
def test_slurm_array_script_without_submitit(workdir, monkeypatch, capsys):
    """submitit absent: the runs go into one sbatch array script; each task records its exit code;
    a failed task is recorded and the sweep goes on."""
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    monkeypatch.setenv("PATH", f"{fake_slurm(workdir)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_OUT", str(workdir))
    monkeypatch.setattr(SbatchBackend, "poll_seconds", 0.05)
    monkeypatch.setattr(runner, "TRAIN_COMMAND", train_command(fake_trainer(workdir, fail="lr2e-4", code=1)))
    code = main(["sweep", str(sweep_file(workdir, TWO)), "--slurm", "--partition", "debug", "--gpus-per-trial", "2"])
    assert code == 1
    out = capsys.readouterr().out
    assert "SLURM job array via sbatch on partition debug" in out
    script = (workdir / "submitted.sbatch").read_text()
    for line in ("#SBATCH --array=0-1", "#SBATCH --partition=debug", "#SBATCH --gres=gpu:2", "1440"):
        assert line in script
    assert script.count("-m grpolab train --config") == 0  # the fake's command: the sweep's TRAIN_COMMAND
    assert script.count("GRPOLAB_RUN_DIR=") == 2 and script.count("GRPOLAB_CONFIG_SHA256=") == 2
    assert "GRPOLAB_RUN_DIR_OWNER" not in script  # SLURM starts the task, not the sweep's process
    assert (workdir / "sbatch_args.txt").read_text().splitlines()[0] == "--parsable"
    subprocess.run(["bash", "-n", str(workdir / "submitted.sbatch")], check=True)
    trials = record_of(workdir, "two")["trials"]
    assert [(t["status"], t["exit_code"]) for t in trials] == [("finished", 0), ("failed", 1)]
    assert "trial 2 failed (exit 1); going on" in out and "job 77_0" in out


def test_slurm_task_without_exit_status_is_recorded_as_preempted(workdir, monkeypatch):
    """A task SLURM no longer knows and that wrote no exit code (preempted, timed out)."""
    monkeypatch.setenv("PATH", f"{fake_slurm(workdir)}{os.pathsep}{os.environ['PATH']}")
    backend = SbatchBackend(workdir / "slurm", SlurmOptions())
    unit = Unit(trial=None, run_dir=workdir, command=["true"], env={})
    unit.handle = {"job": "9", "task": 0, "exit": workdir / "slurm" / "none.exit"}
    assert backend.poll(unit) == 1 and "9_0 ended without an exit status (preempted" in unit.error


def test_submitit_local_executor_runs_the_array(workdir, monkeypatch, subprocess_env, capsys):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PYTHONPATH", subprocess_env["PYTHONPATH"])
    monkeypatch.setattr(SubmititBackend, "poll_seconds", 0.2)
    monkeypatch.setattr(runner, "TRAIN_COMMAND", train_command(fake_trainer(workdir, fail="lr2e-4", code=4)))
    sweep = load_sweep(sweep_file(workdir, TWO))
    backend = SubmititBackend(workdir / "submitit", SlurmOptions(time_minutes=5), cluster="local")
    assert run_sweep(sweep, backend=backend) == 1
    out = capsys.readouterr().out
    trials = record_of(workdir, "two")["trials"]
    assert [(t["status"], t["exit_code"]) for t in trials] == [("finished", 0), ("failed", 4)]
    assert Path(trials[0]["run_dir"]).name.startswith("base_lr1e-4_")
    assert "submitit's local executor" in out and "trial 2 failed (exit 4); going on" in out


def test_a_job_that_raises_is_recorded_not_fatal(workdir):
    """submitit raises from result() for a failed or preempted job: recorded as failed with why."""

    class Job:
        job_id, state = "12_3", "PREEMPTED"

        def done(self):
            return True

        def result(self):
            raise RuntimeError("job was preempted")

    backend = SubmititBackend.__new__(SubmititBackend)
    unit = Unit(trial=None, run_dir=workdir, command=[], env={}, handle=Job())
    assert backend.poll(unit) == 1
    assert unit.error.startswith("SLURM job 12_3 preempted (PREEMPTED): job was preempted")


# --------------------------------------------------------------------------- optuna pruning
def test_optuna_prunes_a_trial_from_its_intermediate_values(workdir, monkeypatch, capsys):
    """The first trial sets the median; a later trial whose reward is below it at the same step is
    stopped (SIGTERM) while it runs, recorded as pruned, and the sweep goes on."""
    optuna = pytest.importorskip("optuna")
    monkeypatch.setattr(runner, "TRAIN_COMMAND", train_command(fake_trainer(workdir, steps=8, delay=0.5)))
    studies = []
    real_create = optuna.create_study

    def create_study(*args, **kwargs):  # the first trial high, the second low: the second must be pruned
        study = real_create(*args, **kwargs)
        study.enqueue_trial({"training.learning_rate": 1e-3})
        study.enqueue_trial({"training.learning_rate": 1e-5})
        studies.append(study)
        return study

    monkeypatch.setattr(optuna, "create_study", create_study)
    text = (
        "name: tpe\nbase: configs/base.yaml\nstrategy: optuna\ntrials: 2\nmetric: reward\n"
        "parameters:\n  training.learning_rate: [1.0e-3, 1.0e-5]\n"
    )
    assert main(["sweep", str(sweep_file(workdir, text))]) == 0
    out = capsys.readouterr().out
    trials = record_of(workdir, "tpe")["trials"]
    assert [t["status"] for t in trials] == ["finished", "pruned"], out
    pruned = json.loads((Path(trials[1]["run_dir"]) / "run_info.json").read_text())
    assert pruned["status"] == "interrupted" and pruned["global_step"] < 8  # stopped while it ran
    assert "trial 2 pruned" in out
    assert [t.state.name for t in studies[0].trials] == ["COMPLETE", "PRUNED"]


# --------------------------------------------------------------------------- the real thing
@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPU cores")
def test_real_parallel_sweep_of_the_tiny_model(tiny_gpt2, tmp_path, monkeypatch, capsys, subprocess_env):
    """Two trials of the tiny model at once, each `python -m grpolab train` on its own core."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", subprocess_env["PYTHONPATH"])
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text(
        "mode: local\noutput_dir: ./results\n"
        f"model:\n  name_or_path: {tiny_gpt2}\n"
        "data:\n  max_samples: 8\n"
        "training:\n  max_steps: 2\n  per_device_train_batch_size: 2\n  logging_steps: 1\n  save_steps: 1000\n"
        "grpo:\n  num_generations: 2\n  generation_batch_size: 2\n  beta: 0.0\n"
        "generation:\n  max_completion_length: 4\nlogging:\n  report_to: [none]\n"
    )
    path = tmp_path / "sweep.yaml"
    path.write_text("name: par\nbase: configs/tiny.yaml\nparameters:\n  training.learning_rate: [1.0e-4, 1.0e-2]\n")
    assert main(["sweep", str(path), "--parallel", "2"]) == 0
    out = capsys.readouterr().out
    runs = sorted(p for p in (tmp_path / "results").iterdir() if p.is_dir())
    assert [p.name.rsplit("_", 1)[0] for p in runs] == ["tiny_lr0.01", "tiny_lr1e-4"]
    infos = [json.loads((p / "run_info.json").read_text()) for p in runs]
    for run, info in zip(runs, infos):
        assert info["status"] == "finished" and info["global_step"] == 2 and info["run_name"] == run.name
        assert info["threads_per_process"] == 1  # `auto` threads follow the core it was pinned to
        assert (run / "model").is_dir() and (run / "output.log").is_file()
    assert infos[0]["started"] <= infos[1]["ended"] and infos[1]["started"] <= infos[0]["ended"]
    assert "sweep par: 2 trials, 2 finished" in out and list((tmp_path / "results").glob("sweep_par_*.png"))


def test_slurm_without_sbatch_or_a_refused_job_is_a_clear_error(workdir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)
    path = sweep_file(workdir, TWO)
    monkeypatch.setenv("PATH", str(workdir / "empty"))
    assert main(["sweep", str(path), "--slurm"]) == 2
    assert "--slurm: needs `sbatch` on PATH (or pip install submitit)" in capsys.readouterr().err
    bin_dir = fake_slurm(workdir)
    (bin_dir / "sbatch").write_text(
        "#!/bin/bash\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n"
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert main(["sweep", str(path), "--slurm", "--partition", "nope"]) == 2
    assert "invalid partition specified: nope" in capsys.readouterr().err
    runs = [p for p in (workdir / "results").iterdir() if p.is_dir() and not p.name.endswith("_slurm")]
    assert runs == []  # the run directories made for the refused job are gone again
