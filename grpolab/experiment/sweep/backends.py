"""Where a sweep's runs execute: here (one at a time, or N at once on their own GPUs and cores), or as a
SLURM job array through submitit. A backend starts `Unit`s, polls their exit codes, and stops one."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grpolab.config import ConfigError
from grpolab.run.run_dir import CONFIG_SHA_ENV, RUN_DIR_ENV
from grpolab.runtime.hardware import core_ids, probe

if TYPE_CHECKING:
    from submitit import Job

    from .runner import Trial

PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding grpolab/ (a checkout or site-packages)
EXIT_NO_STATUS = 1  # a SLURM task that ended without an exit code (preempted, timed out, cancelled)


@dataclass
class Unit:
    """One training run of a sweep: a trial file (one parameter set, one seed) and its run directory."""

    trial: Trial
    run_dir: Path
    command: list[str]
    env: dict[str, str]  # added to the environment the sweep runs in
    handle: subprocess.Popen | Job | None = None  # the process here, or the SLURM job
    slot: int | None = None  # LocalBackend: the slot it runs in
    error: str | None = None  # why the backend could not run it to the end (a failed or preempted job)
    stopped: bool = False  # the sweep stopped it (pruned)
    reported: int = -1  # the last step reported to the strategy
    note: str = ""  # where it runs, for the start line


def child_env(added: dict[str, str]) -> dict[str, str]:
    """The sweep's environment, the unit's variables, and grpolab importable for `-m grpolab`."""
    env = dict(os.environ, **added)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def _refuse(key: str, message: str, fix: str | None = None) -> ConfigError:
    return ConfigError.of(key, message, fix, "sweep")


def exit_code_of(code: int) -> int:
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def run_training(command: list[str], env: dict[str, str], cwd: str) -> int:
    """Run one training command to its end and return its exit code. This is what a SLURM job
    executes (submitit pickles it by name), so it must stay a module-level function."""
    return exit_code_of(subprocess.run(command, env=child_env(env), cwd=cwd).returncode)


@dataclass
class Slot:
    gpus: list[str]  # CUDA_VISIBLE_DEVICES ids
    cores: list[int]

    def describe(self) -> str:
        return f"cores {_ranges(self.cores)}, GPUs {','.join(self.gpus) or 'none'}"


def plan_slots(parallel: int, gpus_per_trial: int | None, gpus: list[str], cores: list[int]) -> list[Slot]:
    """One slot per concurrent run: its GPUs and its CPU cores, none shared between slots."""
    if parallel < 1:
        raise _refuse("--parallel", f"must be 1 or more, got {parallel}.", "e.g. --parallel 2")
    if gpus_per_trial is None:
        gpus_per_trial = len(gpus) // parallel if len(gpus) >= parallel else 0
        if gpus and gpus_per_trial == 0:
            message = f"{parallel} runs at once need at least {parallel} GPUs (one each); {len(gpus)} visible."
            raise _refuse("--parallel", message, f"use --parallel {len(gpus)}, or --gpus-per-trial 0 to train on CPU")
    if gpus_per_trial < 0:
        raise _refuse("--gpus-per-trial", f"must be 0 or more, got {gpus_per_trial}.")
    if gpus_per_trial * parallel > len(gpus):
        fewer = max(1, len(gpus) // max(1, gpus_per_trial))
        raise _refuse(
            "--gpus-per-trial",
            f"{parallel} runs x {gpus_per_trial} GPUs = {gpus_per_trial * parallel} GPUs, but {len(gpus)} "
            f"are visible ({', '.join(gpus) or 'none'}).",
            f"use --parallel {fewer}" if gpus and gpus_per_trial else "use --gpus-per-trial 0 (CPU)",
        )
    if parallel > len(cores):
        message = f"{parallel} runs at once need a CPU core each; this process may use {len(cores)}."
        raise _refuse("--parallel", message, f"use --parallel {len(cores)}")
    share, each = len(cores) // parallel, gpus_per_trial
    return [Slot(gpus[i * each : (i + 1) * each], cores[i * share : (i + 1) * share]) for i in range(parallel)]


class LocalBackend:
    """Runs on this machine: with parallel 1 a run has the whole machine and the terminal, as a plain
    `grpolab train` would; with parallel N each run gets its own slot (GPUs through CUDA_VISIBLE_DEVICES,
    cores through its CPU affinity, which `auto` CPU threads follow) and writes to its output.log."""

    poll_seconds = 0.5

    def __init__(self, parallel: int = 1, gpus_per_trial: int | None = None, cwd: Path | None = None):
        self.parallel = self.capacity = parallel
        self.cwd = cwd or Path.cwd()
        self.slots: list[Slot] | None = None
        if parallel > 1 or gpus_per_trial is not None:
            # nvidia-smi, not torch: the sweep itself never trains.
            gpus = [str(gpu.ident) for gpu in probe(use_torch=False).gpus]
            self.slots = plan_slots(parallel, gpus_per_trial, gpus, core_ids())
        self.free = list(range(parallel))
        # One run at a time in the terminal says nothing extra; otherwise each start and end is a line.
        self.announces = self.slots is not None

    def describe(self) -> str:
        if self.slots is None:
            return "one run at a time on this machine"
        parts = "; ".join(f"slot {i + 1}: {slot.describe()}" for i, slot in enumerate(self.slots))
        return f"{self.parallel} runs at once on this machine ({parts})"

    def start(self, units: list[Unit]) -> None:
        for unit in units:
            unit.slot = self.free.pop(0)
            env = child_env(unit.env)
            preexec = None
            if self.slots is not None:
                slot = self.slots[unit.slot]
                env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)  # "" for a CPU slot: no GPU at all
                if hasattr(os, "sched_setaffinity"):
                    preexec = lambda cores=set(slot.cores): os.sched_setaffinity(0, cores)  # noqa: E731
                unit.note = slot.describe()
            output = {}
            if self.parallel > 1:
                output = {"stdout": (unit.run_dir / "output.log").open("w"), "stderr": subprocess.STDOUT}
                unit.note += f"; output in {unit.run_dir / 'output.log'}"
            unit.handle = subprocess.Popen(unit.command, env=env, cwd=self.cwd, preexec_fn=preexec, **output)
            if output:
                output["stdout"].close()  # the child holds its own copy

    def poll(self, unit: Unit) -> int | None:
        if (code := unit.handle.poll()) is None:
            return None
        self.free = sorted([*self.free, unit.slot])
        return exit_code_of(code)

    def stop(self, unit: Unit) -> None:
        """SIGTERM: the run saves a checkpoint and ends as interrupted."""
        if unit.handle.poll() is None:
            unit.handle.send_signal(signal.SIGTERM)

    def interrupt(self, units: list[Unit]) -> None:
        pass  # Ctrl-C reached the runs from the terminal (one process group): each checkpoints and stops


def _ranges(cores: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    spans = [[c for _, c in run] for _, run in itertools.groupby(enumerate(cores), lambda pair: pair[1] - pair[0])]
    return ",".join(f"{s[0]}-{s[-1]}" if len(s) > 1 else str(s[0]) for s in spans) or "-"


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_trial: int = 0
    cpus_per_trial: int | None = None
    time_minutes: int = 24 * 60
    parallel: int | None = None  # array tasks running at once (None: as many as SLURM allows)


class SubmititBackend:
    """A SLURM job array per batch through submitit (cluster="local": its local executor, here)."""

    poll_seconds = 2.0
    announces = True

    def __init__(self, folder: Path, options: SlurmOptions, cluster: str = "slurm", cwd: Path | None = None):
        try:
            import submitit
        except ImportError:
            fix = "pip install submitit (or pip install 'grpolab[experiment]')"
            raise _refuse("--slurm", "submits the runs through submitit, which is not installed.", fix) from None
        self.options, self.cwd, self.folder, self.cluster = options, cwd or Path.cwd(), folder, cluster
        self.capacity = options.parallel
        folder.mkdir(parents=True, exist_ok=True)
        try:
            self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        except RuntimeError as exc:  # no srun here: not a SLURM machine
            raise _refuse("--slurm", str(exc), "run the sweep on a SLURM login node") from None
        optional = {"gpus_per_node": options.gpus_per_trial, "cpus_per_task": options.cpus_per_trial}
        if cluster == "slurm":
            optional.update(slurm_partition=options.partition, slurm_array_parallelism=options.parallel)
        params = {k: v for k, v in optional.items() if v}  # unset: SLURM's own default
        self.executor.update_parameters(
            name="grpolab-sweep", timeout_min=options.time_minutes, nodes=1, tasks_per_node=1, **params
        )

    def describe(self) -> str:
        where = f"partition {self.options.partition}" if self.options.partition else "the default partition"
        engine = "SLURM job array" if self.cluster == "slurm" else "submitit's local executor"
        return f"{engine} through submitit on {where} (job files in {self.folder})"

    def start(self, units: list[Unit]) -> None:
        # A SLURM task is started by SLURM, not by this process: a hand-off bound to this process
        # would not apply, so it gets the run directory and the config's sha256 only.
        envs = [{k: v for k, v in u.env.items() if k in (RUN_DIR_ENV, CONFIG_SHA_ENV)} for u in units]
        cwd = str(self.cwd)
        try:
            with self.executor.batch():
                jobs = [self.executor.submit(run_training, u.command, env, cwd) for u, env in zip(units, envs)]
        except Exception as exc:  # sbatch refused the array: a bad partition, time limit or account
            raise _refuse("--slurm", f"SLURM refused the job array: {str(exc).strip()[:1000]}") from None
        for unit, job in zip(units, jobs):
            unit.handle, unit.note = job, f"job {job.job_id}"

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
