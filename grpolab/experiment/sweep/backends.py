"""Where a sweep's training runs execute: here (one after another, or N at once, each pinned to
its own GPUs and CPU cores), or on SLURM as a job array (through submitit, else an sbatch
script). Each backend starts `Unit`s (one training run each), says when one has ended and with
which exit code, and can stop one (a pruned optuna trial).

A unit's command is always `python -m grpolab train --config <trial file>`, with the run
directory handed over in its environment (grpolab.run.run_dir.handoff_env)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpolab.config import ConfigError, Problem
from grpolab.run.run_dir import CONFIG_SHA_ENV, RUN_DIR_ENV

PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding grpolab/ (a checkout or site-packages)
EXIT_NO_STATUS = 1  # a SLURM task that ended without writing its exit code (preempted, timed out, cancelled)


@dataclass
class Unit:
    """One training run of a sweep: a trial file (one parameter set, one seed) and its run directory."""

    trial: Any  # runner.Trial
    run_dir: Path
    command: list[str]
    env: dict[str, str]  # added to the environment the sweep runs in
    handle: Any = None  # the backend's: a Popen, a submitit job, an array task index
    slot: Any = None
    started: float = 0.0
    error: str | None = None  # why the backend could not run it to the end (a failed or preempted job)
    stopped: bool = False  # the sweep stopped it (pruned)
    reported: int = -1  # the last step reported to the strategy
    note: str = ""  # where it runs, for the start line


def child_env(added: dict[str, str]) -> dict[str, str]:
    """The sweep's environment, the unit's variables, and grpolab importable for `-m grpolab`."""
    env = dict(os.environ, **added)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def slurm_env(env: dict[str, str]) -> dict[str, str]:
    """The hand-off a SLURM task gets: the run directory and the config's sha256 only. The task is
    started by SLURM, not by this process, so a hand-off bound to this process would not apply."""
    return {k: v for k, v in env.items() if k in (RUN_DIR_ENV, CONFIG_SHA_ENV)}


def exit_code_of(code: int) -> int:
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def run_training(command: list[str], env: dict[str, str], cwd: str) -> int:
    """Run one training command to its end and return its exit code. This is what a SLURM job
    executes (submitit pickles it by name), so it must stay a module-level function."""
    return exit_code_of(subprocess.run(command, env=child_env(env), cwd=cwd).returncode)


# ------------------------------------------------------------------------- this machine
def visible_gpus() -> list[str]:
    """GPU ids this process may use: the GPUs nvidia-smi lists, narrowed by CUDA_VISIBLE_DEVICES
    (indices or UUIDs; like CUDA, the list ends at the first id that names no GPU). No torch
    import: the sweep itself never trains. A machine without nvidia-smi has none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    gpus = [tuple(part.strip() for part in line.split(",", 1)) for line in out.stdout.splitlines() if "," in line]
    known = {ident for gpu in gpus for ident in gpu}
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        return [index for index, _ in gpus]
    visible = []
    for ident in os.environ["CUDA_VISIBLE_DEVICES"].split(","):
        if ident.strip() not in known:
            break
        visible.append(ident.strip())
    return visible


def usable_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def plan_slots(parallel: int, gpus_per_trial: int | None, gpus: list[str], cores: list[int]) -> list[dict]:
    """One slot per concurrent run: its GPUs and its CPU cores, none shared between slots."""
    if parallel < 1:
        raise ConfigError(Problem("--parallel", f"must be 1 or more, got {parallel}.", "e.g. --parallel 2", "sweep"))
    if gpus_per_trial is None:
        gpus_per_trial = len(gpus) // parallel if len(gpus) >= parallel else 0
        if gpus and gpus_per_trial == 0:
            raise ConfigError(
                Problem(
                    "--parallel",
                    f"{parallel} runs at once need at least {parallel} GPUs (one each); {len(gpus)} visible.",
                    f"use --parallel {len(gpus)}, or --gpus-per-trial 0 to train on CPU",
                    "sweep",
                )
            )
    if gpus_per_trial < 0:
        raise ConfigError(Problem("--gpus-per-trial", f"must be 0 or more, got {gpus_per_trial}.", None, "sweep"))
    if gpus_per_trial * parallel > len(gpus):
        raise ConfigError(
            Problem(
                "--gpus-per-trial",
                f"{parallel} runs x {gpus_per_trial} GPUs = {gpus_per_trial * parallel} GPUs, but {len(gpus)} "
                f"are visible ({', '.join(gpus) or 'none'}).",
                f"use --parallel {max(1, len(gpus) // max(1, gpus_per_trial))}"
                if gpus and gpus_per_trial
                else "use --gpus-per-trial 0 (CPU)",
                "sweep",
            )
        )
    if parallel > len(cores):
        raise ConfigError(
            Problem(
                "--parallel",
                f"{parallel} runs at once need a CPU core each; this process may use {len(cores)}.",
                f"use --parallel {len(cores)}",
                "sweep",
            )
        )
    share = len(cores) // parallel
    return [
        {
            "gpus": gpus[i * gpus_per_trial : (i + 1) * gpus_per_trial],
            "cores": cores[i * share : (i + 1) * share],
        }
        for i in range(parallel)
    ]


class LocalBackend:
    """Runs on this machine. With parallel 1 a run has the whole machine and the terminal, as a
    plain `grpolab train` would; with parallel N each run gets its own slot (GPUs through
    CUDA_VISIBLE_DEVICES, cores through the CPU affinity it starts with, which `auto` CPU threads
    follow) and writes its output to output.log in its run directory."""

    poll_seconds = 0.5

    def __init__(self, parallel: int = 1, gpus_per_trial: int | None = None, cwd: Path | None = None):
        self.parallel, self.cwd = parallel, cwd or Path.cwd()
        self.slots = None
        if parallel > 1 or gpus_per_trial is not None:
            self.slots = plan_slots(parallel, gpus_per_trial, visible_gpus(), usable_cores())
        self.free = list(range(parallel))

    @property
    def capacity(self) -> int:
        return self.parallel

    def describe(self) -> str:
        if self.slots is None:
            return "one run at a time on this machine"
        parts = []
        for i, slot in enumerate(self.slots):
            gpus = ",".join(slot["gpus"]) or "none"
            parts.append(f"slot {i + 1}: cores {_ranges(slot['cores'])}, GPUs {gpus}")
        return f"{self.parallel} runs at once on this machine ({'; '.join(parts)})"

    def start(self, units: list[Unit]) -> None:
        for unit in units:
            unit.slot = self.free.pop(0)
            env = child_env(unit.env)
            stdout = None
            preexec = None
            if self.slots is not None:
                slot = self.slots[unit.slot]
                env["CUDA_VISIBLE_DEVICES"] = ",".join(slot["gpus"])  # "" for a CPU slot: no GPU at all
                cores = set(slot["cores"])
                if hasattr(os, "sched_setaffinity"):
                    preexec = lambda cores=cores: os.sched_setaffinity(0, cores)  # noqa: E731
                unit.note = f"cores {_ranges(slot['cores'])}, GPUs {','.join(slot['gpus']) or 'none'}"
            if self.parallel > 1:
                stdout = (unit.run_dir / "output.log").open("w")
                unit.note += f"; output in {unit.run_dir / 'output.log'}"
            unit.handle = subprocess.Popen(
                unit.command,
                env=env,
                cwd=self.cwd,
                stdout=stdout,
                stderr=subprocess.STDOUT if stdout else None,
                preexec_fn=preexec,
            )
            if stdout is not None:
                stdout.close()  # the child holds its own copy
            unit.started = time.time()

    def poll(self, unit: Unit) -> int | None:
        code = unit.handle.poll()
        if code is None:
            return None
        self.free.append(unit.slot)
        self.free.sort()
        return exit_code_of(code)

    def stop(self, unit: Unit) -> None:
        """SIGTERM: the run saves a checkpoint and ends as interrupted."""
        if unit.handle.poll() is None:
            unit.handle.send_signal(signal.SIGTERM)

    def interrupt(self, units: list[Unit]) -> None:
        pass  # Ctrl-C reached the runs from the terminal (one process group): each checkpoints and stops


def _ranges(cores: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    out, start = [], None
    for i, core in enumerate(cores):
        if start is None:
            start = core
        if i + 1 == len(cores) or cores[i + 1] != core + 1:
            out.append(str(start) if start == core else f"{start}-{core}")
            start = None
    return ",".join(out) or "-"


# ------------------------------------------------------------------------- SLURM
@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_trial: int = 0
    cpus_per_trial: int | None = None
    time_minutes: int = 24 * 60
    parallel: int | None = None  # array tasks running at once (None: as many as SLURM allows)
    extra: list[str] = field(default_factory=list)  # more #SBATCH lines, e.g. --account=x


class SubmititBackend:
    """A SLURM job array through submitit (the runs of one batch go in one array). With
    cluster="local", submitit's local executor runs the same jobs as processes here."""

    poll_seconds = 2.0

    def __init__(self, folder: Path, options: SlurmOptions, cluster: str = "slurm", cwd: Path | None = None):
        import submitit

        self.submitit, self.options, self.cwd = submitit, options, cwd or Path.cwd()
        folder.mkdir(parents=True, exist_ok=True)
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        params = {"timeout_min": options.time_minutes, "nodes": 1, "tasks_per_node": 1}
        if options.gpus_per_trial:
            params["gpus_per_node"] = options.gpus_per_trial
        if options.cpus_per_trial:
            params["cpus_per_task"] = options.cpus_per_trial
        if cluster == "slurm":
            if options.partition:
                params["slurm_partition"] = options.partition
            if options.parallel:
                params["slurm_array_parallelism"] = options.parallel
            if options.extra:
                params["slurm_additional_parameters"] = dict(_option(o) for o in options.extra)
        self.executor.update_parameters(name="grpolab-sweep", **params)
        self.folder, self.cluster = folder, cluster

    @property
    def capacity(self) -> int | None:
        return self.options.parallel

    def describe(self) -> str:
        where = f"partition {self.options.partition}" if self.options.partition else "the default partition"
        engine = "SLURM job array" if self.cluster == "slurm" else "submitit's local executor"
        return f"{engine} through submitit on {where} (job files in {self.folder})"

    def start(self, units: list[Unit]) -> None:
        with self.executor.batch():
            jobs = [self.executor.submit(run_training, u.command, slurm_env(u.env), str(self.cwd)) for u in units]
        for unit, job in zip(units, jobs):
            unit.handle, unit.started = job, time.time()
            unit.note = f"job {job.job_id}"

    def poll(self, unit: Unit) -> int | None:
        job = unit.handle
        if not job.done():
            return None
        try:
            return int(job.result())
        except Exception as exc:  # a failed, cancelled or preempted job: recorded, the sweep goes on
            state = getattr(job, "state", "") or ""
            kind = "preempted" if "PREEMPT" in state.upper() else "failed"
            unit.error = f"SLURM job {job.job_id} {kind} ({state or type(exc).__name__}): {str(exc).strip()[:300]}"
            return EXIT_NO_STATUS

    def stop(self, unit: Unit) -> None:
        unit.handle.cancel(check=False)

    def interrupt(self, units: list[Unit]) -> None:
        for unit in units:
            self.stop(unit)


def _option(text: str) -> tuple[str, str]:
    key, _, value = text.lstrip("-").partition("=")
    return key.replace("-", "_"), value


class SbatchBackend:
    """Without submitit: each batch of runs becomes an sbatch array script beside the sweep
    record. Every task writes its exit code to a file when it ends; a task that ends without one
    (preempted, timed out, cancelled) is found through squeue and recorded as failed."""

    poll_seconds = 5.0

    def __init__(self, folder: Path, options: SlurmOptions, cwd: Path | None = None):
        if not shutil.which("sbatch"):
            raise ConfigError(
                Problem(
                    "--slurm",
                    "needs `sbatch` on PATH (or pip install submitit).",
                    "run the sweep on a SLURM login node",
                    "sweep",
                )
            )
        self.folder, self.options, self.cwd = folder, options, cwd or Path.cwd()
        folder.mkdir(parents=True, exist_ok=True)
        self.batches = 0

    @property
    def capacity(self) -> int | None:
        return None

    def describe(self) -> str:
        where = f"partition {self.options.partition}" if self.options.partition else "the default partition"
        return f"SLURM job array via sbatch on {where} (scripts in {self.folder}; submitit is not installed)"

    def script(self, units: list[Unit], batch: int) -> str:
        o = self.options
        lines = [
            "#!/bin/bash",
            "# A grpolab sweep's training runs, one array task each (written by `grpolab sweep --slurm`).",
            f"#SBATCH --job-name=grpolab-sweep-{batch}",
            f"#SBATCH --array=0-{len(units) - 1}" + (f"%{o.parallel}" if o.parallel else ""),
            "#SBATCH --nodes=1",
            "#SBATCH --ntasks=1",
            f"#SBATCH --time={o.time_minutes}",
            f"#SBATCH --output={self.folder}/batch{batch}-task%a.log",
        ]
        if o.partition:
            lines.append(f"#SBATCH --partition={o.partition}")
        if o.gpus_per_trial:
            lines.append(f"#SBATCH --gres=gpu:{o.gpus_per_trial}")
        if o.cpus_per_trial:
            lines.append(f"#SBATCH --cpus-per-task={o.cpus_per_trial}")
        lines += [f"#SBATCH {extra}" for extra in o.extra]
        lines += [
            "set -u",
            f"cd {shlex.quote(str(self.cwd))}",
            f"export PYTHONPATH={shlex.quote(str(PACKAGE_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
            'case "$SLURM_ARRAY_TASK_ID" in',
        ]
        for i, unit in enumerate(units):
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in slurm_env(unit.env).items())
            lines.append(f"    {i}) env {exports} {shlex.join(unit.command)} ;;")
        lines += [
            '    *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
            "esac",
            "code=$?",
            f'echo "$code" > {shlex.quote(str(self.folder))}/batch{batch}-task"$SLURM_ARRAY_TASK_ID".exit',
            'exit "$code"',
        ]
        return "\n".join(lines) + "\n"

    def start(self, units: list[Unit]) -> None:
        self.batches += 1
        batch = self.batches
        path = self.folder / f"batch{batch}.sbatch"
        path.write_text(self.script(units, batch))
        done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ConfigError(
                Problem(
                    "--slurm", f"sbatch refused {path}: {done.stderr.strip() or done.stdout.strip()}", None, "sweep"
                )
            )
        job_id = done.stdout.strip().split(";")[0].splitlines()[-1] if done.stdout.strip() else "?"
        for i, unit in enumerate(units):
            unit.handle = {"job": job_id, "task": i, "exit": self.folder / f"batch{batch}-task{i}.exit"}
            unit.started = time.time()
            unit.note = f"job {job_id}_{i}"

    def poll(self, unit: Unit) -> int | None:
        exit_file = unit.handle["exit"]
        if exit_file.is_file():
            text = exit_file.read_text().strip()
            return int(text) if text.lstrip("-").isdigit() else EXIT_NO_STATUS
        if self._gone(unit):
            task = f"{unit.handle['job']}_{unit.handle['task']}"
            unit.error = f"SLURM task {task} ended without an exit status (preempted, timed out or cancelled)"
            return EXIT_NO_STATUS
        return None

    def _gone(self, unit: Unit) -> bool:
        """Whether SLURM no longer knows the task (asked at most every 30 s per task)."""
        now = time.time()
        if now - unit.handle.get("checked", 0.0) < 30:
            return False
        unit.handle["checked"] = now
        if not shutil.which("squeue"):
            return False
        task = f"{unit.handle['job']}_{unit.handle['task']}"
        done = subprocess.run(["squeue", "-h", "-j", task], capture_output=True, text=True, timeout=60)
        return done.returncode == 0 and not done.stdout.strip() and not unit.handle["exit"].is_file()

    def stop(self, unit: Unit) -> None:
        if shutil.which("scancel"):
            subprocess.run(["scancel", f"{unit.handle['job']}_{unit.handle['task']}"], capture_output=True, timeout=60)

    def interrupt(self, units: list[Unit]) -> None:
        for unit in units:
            self.stop(unit)


def slurm_backend(folder: Path, options: SlurmOptions, cwd: Path | None = None):
    """submitit when it is installed, else an sbatch array script."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        return SbatchBackend(folder, options, cwd)
    return SubmititBackend(folder, options, "slurm", cwd)


__all__ = [
    "LocalBackend",
    "SbatchBackend",
    "SlurmOptions",
    "SubmititBackend",
    "Unit",
    "plan_slots",
    "run_training",
    "slurm_backend",
]
