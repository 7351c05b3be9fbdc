"""`grpolab sweep --parallel N` and `--slurm`: runs at once on their own cores, separate run
directories, failures recorded, SLURM through submitit (its local executor, and a fake sbatch
that records the array script and refuses it), optuna pruning from metrics.jsonl while a trial
runs, a guard stop recorded as a pruned trial, and one real parallel sweep of the tiny model.

The fake `grpolab train` below keeps the sweep's contract with training (--config, the run
directory handed over in GRPOLAB_RUN_DIR) and writes a run directory like the pipeline's in a
fraction of a second, so sweeps of many runs stay fast."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from grpolab.cli.main import main
from grpolab.config import ConfigError
from grpolab.experiment.sweep import LocalBackend, SlurmOptions, SubmititBackend, load_sweep, run_sweep, runner
from grpolab.experiment.sweep.backends import Unit, plan_slots
from grpolab.run.exit_codes import EXIT_GUARD_STOP

# Writes run_info.json (with where it ran: CPU affinity, CUDA_VISIBLE_DEVICES, start/end time),
# resolved_config.yaml, metrics.jsonl (one record per step, `delay` seconds apart) and summary.json.
# reward = lr x 1000 + NOISE[seed] at every step. A config whose path contains FAIL exits CODE.
# SIGTERM (a pruned trial) ends it as interrupted with exit 143, as the pipeline does. A config
# whose path contains GUARD is stopped by the live guard after step 2, as the pipeline records it:
# status `stopped`, the finding in run_info's `guard.stopped`, exit code EXIT_GUARD_STOP.
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
    if GUARD and GUARD in config and step == 2:
        info.update(status="stopped", global_step=step, guard={"stopped": {"kind": "constant_reward", "step": step}})
        (run_dir / "run_info.json").write_text(json.dumps(info))
        sys.exit(EXIT_GUARD_STOP)
final = records[-1]
(run_dir / "summary.json").write_text(json.dumps({"final": final, "best": final, "steps": STEPS}))
info.update(status="finished", global_step=STEPS, ended_at=time.time())
(run_dir / "run_info.json").write_text(json.dumps(info))
"""


def fake_trainer(
    folder: Path, fail: str = "", code: int = 1, steps: int = 3, delay: float = 0.0, noise=None, guard: str = ""
) -> Path:
    script = folder / "fake_train.py"
    header = (
        f"FAIL = {fail!r}\nCODE = {code}\nSTEPS = {steps}\nDELAY = {delay}\nNOISE = {dict(noise or {})!r}\n"
        f"GUARD = {guard!r}\nEXIT_GUARD_STOP = {EXIT_GUARD_STOP}\n"
    )
    script.write_text(header + FAKE_TRAINER)
    return script


def train_command(script: Path) -> list[str]:
    return [sys.executable, str(script), "train"]


# A fake `sbatch SCRIPT` that keeps the script submitit wrote and refuses it, as sbatch does for
# a partition that does not exist.
FAKE_SBATCH = """#!/bin/bash
cp "${@: -1}" "$FAKE_OUT/submitted.sbatch"
echo 'sbatch: error: invalid partition specified: nope' >&2
exit 1
"""


def fake_sbatch(folder: Path) -> Path:
    bin_dir = folder / "fake_slurm"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "srun").write_text("#!/bin/bash\nexit 1\n")  # submitit looks for it; the array never starts
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
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
    assert [s.gpus for s in slots] == [["0", "1"], ["2", "3"]]
    assert [s.cores for s in slots] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [s.gpus for s in plan_slots(2, 1, ["0", "1", "2"], [0, 1])] == [["0"], ["1"]]
    assert [s.gpus for s in plan_slots(2, None, [], [0, 1, 2])] == [[], []]  # CPU: no GPU for anyone
    with pytest.raises(ConfigError, match=r"--gpus-per-trial: 2 runs x 3 GPUs = 6 GPUs, but 4 are visible"):
        plan_slots(2, 3, ["0", "1", "2", "3"], list(range(8)))
    with pytest.raises(ConfigError, match=r"--parallel: 3 runs at once need at least 3 GPUs.*Fix: use --parallel 2"):
        plan_slots(3, None, ["0", "1"], list(range(8)))
    with pytest.raises(ConfigError, match=r"--parallel: 3 runs at once need a CPU core each; .* 2\..*--parallel 2"):
        plan_slots(3, 0, [], [0, 1])


def test_slots_take_the_gpus_cuda_would_show(tmp_path, monkeypatch):
    """The sweep's GPUs are the one hardware probe's (nvidia-smi, no torch), by the id that
    CUDA_VISIBLE_DEVICES gave them; like CUDA, the list ends at the first id that names no GPU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/bash\necho '0, GPU-aaa, NVIDIA H100, 9.0, 81559'\necho '1, GPU-bbb, NVIDIA H100, 9.0, 81559'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [slot.gpus for slot in LocalBackend(2, 1).slots] == [["0"], ["1"]]
    for value, expected in (("1", ["1"]), ("GPU-bbb,0", ["GPU-bbb", "0"]), ("0,7,1", ["0"]), ("", []), ("-1", [])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        assert LocalBackend(1, len(expected)).slots[0].gpus == expected, value
    # No GPU on the machine: a CUDA_VISIBLE_DEVICES=0 left in the environment names none.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert LocalBackend(1, 0).slots[0].gpus == []
    with pytest.raises(ConfigError, match="1 runs x 1 GPUs = 1 GPUs, but 0 are visible"):
        LocalBackend(1, 1)


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
    assert exit_info.value.code == 2
    assert "expected a whole number from 1 to 2**63 - 1, got 0" in capsys.readouterr().err
    assert not (workdir / "results").exists()  # nothing started


# --------------------------------------------------------------------------- --slurm
def test_slurm_without_submitit_or_slurm_or_with_a_refused_array_is_a_clear_error(workdir, monkeypatch, capsys):
    """submitit is the one SLURM path: without it, a short error says how to install it; so does
    a machine without SLURM, and a refused array (its script carries the flags), which leaves no
    run directories behind."""
    path = sweep_file(workdir, TWO)
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    assert main(["sweep", str(path), "--slurm"]) == 2
    err = capsys.readouterr().err
    assert "--slurm: submits the runs through submitit, which is not installed." in err
    assert "Fix: pip install submitit (or pip install 'grpolab[experiment]')" in err and "Traceback" not in err
    monkeypatch.delitem(sys.modules, "submitit")
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(workdir / "empty"))
    assert main(["sweep", str(path), "--slurm"]) == 2
    err = capsys.readouterr().err
    assert '--slurm: Could not detect "srun", are you indeed on a slurm cluster? Fix: run the sweep on a SLURM' in err
    monkeypatch.setenv("PATH", f"{fake_sbatch(workdir)}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("FAKE_OUT", str(workdir))
    command = ["sweep", str(path), "--slurm", "--partition", "nope", "--gpus-per-trial", "2", "--parallel", "2"]
    assert main(command) == 2
    assert "SLURM refused the job array" in capsys.readouterr().err
    script = (workdir / "submitted.sbatch").read_text()
    for line in ("--array=0-1%2", "--partition=nope", "--gpus-per-node=2", "--time=1440", "--job-name=grpolab-sweep"):
        assert f"#SBATCH {line}" in script, line
    runs = [p for p in (workdir / "results").iterdir() if p.is_dir() and not p.name.endswith("_slurm")]
    assert runs == []  # the run directories made for the refused job are gone again


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


@pytest.mark.parametrize("strategy", ["grid", "optuna"])
def test_a_guard_stop_is_a_trial_result_and_optuna_prunes_it(workdir, monkeypatch, capsys, strategy):
    """Issue 23: a run the live guard stops (exit EXIT_GUARD_STOP, status `stopped`) is recorded
    with its finding, the sweep goes on and ends with 0, and optuna's study marks it PRUNED, not
    FAILED. The median pruner is off, so only the guard can prune."""
    script = fake_trainer(workdir, steps=4, guard="lr1e-5")
    monkeypatch.setattr(runner, "TRAIN_COMMAND", train_command(script))
    studies = []
    if strategy == "optuna":
        optuna = pytest.importorskip("optuna")
        real_create = optuna.create_study

        def create_study(*args, **kwargs):
            study = real_create(*args, **kwargs)
            for lr in (1e-3, 1e-5):
                study.enqueue_trial({"training.learning_rate": lr})
            studies.append(study)
            return study

        monkeypatch.setattr(optuna, "create_study", create_study)
    head = "strategy: optuna\ntrials: 2\npruner: none\n" if strategy == "optuna" else ""
    text = f"name: g\nbase: configs/base.yaml\n{head}parameters:\n  training.learning_rate: [1.0e-3, 1.0e-5]\n"
    assert main(["sweep", str(sweep_file(workdir, text))]) == 0
    out = capsys.readouterr().out
    trials = record_of(workdir, "g")["trials"]
    assert [(t["status"], t["exit_code"]) for t in trials] == [("finished", 0), ("stopped", EXIT_GUARD_STOP)], out
    assert trials[1]["stopped_by"] == "constant_reward" and "stopped_by" not in trials[0]
    assert json.loads((Path(trials[1]["run_dir"]) / "run_info.json").read_text())["global_step"] == 2
    assert "trial 2 stopped by the guard (see `grpolab doctor" in out and "failed" not in out
    assert "sweep g: 2 trials, 1 finished, 1 not (2)" in out
    if strategy == "optuna":
        assert [t.state.name for t in studies[0].trials] == ["COMPLETE", "PRUNED"]
        assert trials[0]["objective"] == pytest.approx(1e-3 * 1000 + 0.04)


# --------------------------------------------------------------------------- the real thing
@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPU cores")
def test_real_parallel_sweep_of_the_tiny_model(tiny_gpt2, tmp_path, monkeypatch, capsys, subprocess_env):
    """Two trials of the tiny model at once, each `python -m grpolab train` on its own core: the runs,
    their records and configs, and the sweep's table and plot."""
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
    # What the sweep did, by its own clock: when each process started and when it was seen to end.
    # (The runs' own timestamps depend on how the OS shares the cores with the rest of the suite.)
    events = []
    start, poll = LocalBackend.start, LocalBackend.poll

    def started(self, units):
        start(self, units)
        events.extend(("start", unit.run_dir.name) for unit in units)

    def polled(self, unit):
        code = poll(self, unit)
        if code is not None:
            events.append(("end", unit.run_dir.name))
        return code

    monkeypatch.setattr(LocalBackend, "start", started)
    monkeypatch.setattr(LocalBackend, "poll", polled)
    assert main(["sweep", str(path), "--parallel", "2"]) == 0
    out = capsys.readouterr().out
    assert [kind for kind, _ in events] == ["start", "start", "end", "end"], events  # both ran at once
    runs = sorted(p for p in (tmp_path / "results").iterdir() if p.is_dir())
    assert [p.name.rsplit("_", 1)[0] for p in runs] == ["tiny_lr0.01", "tiny_lr1e-4"]
    infos = [json.loads((p / "run_info.json").read_text()) for p in runs]
    for run, info in zip(runs, infos):
        assert info["status"] == "finished" and info["global_step"] == 2 and info["run_name"] == run.name
        assert info["threads_per_process"] == 1  # `auto` threads follow the core it was pinned to
        assert (run / "model").is_dir() and (run / "output.log").is_file()
        assert info["config_file"] == f"configs/{run.name.rsplit('_', 1)[0]}.yaml"  # 1e-2 is written 0.01
        assert "group: par" in (run / "resolved_config.yaml").read_text()  # logging.group
    table = out[out.index("sweep par: 2 trials, 2 finished") :]
    assert "training.learning_rate" in table and all(run.name in table for run in runs)
    assert "1.0e-4" in table and "0.01" in table and list((tmp_path / "results").glob("sweep_par_*.png"))
