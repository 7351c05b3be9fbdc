"""Run a launch that `decide` planned: write the per-run accelerate files and the command into
the run directory, then start the launcher and pass its exit code back."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from grpolab.launch.accelerate_files import write_files

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding grpolab/ (a checkout or site-packages)


@dataclass(frozen=True)
class LaunchSpec:
    cmd: list[str]
    env: dict[str, str]  # added to the ranks' environment (the run directory hand-off)
    files: dict  # path -> text: accelerate config (and DeepSpeed JSON)
    run_dir: Path


def execute(spec: LaunchSpec, preflight=None) -> int:
    """`preflight()`: checks to pass before any rank starts; a run directory made for this launch
    is removed again when they fail."""
    if preflight is not None:
        try:
            preflight()
        except BaseException:
            from grpolab.run.run_dir import remove_if_empty

            remove_if_empty(spec.run_dir)
            raise
    spec.run_dir.mkdir(parents=True, exist_ok=True)  # made already, unless shared or resumed
    write_files(spec.files)
    (spec.run_dir / "launch_command.sh").write_text(_shell_script(spec.cmd, spec.env))
    print(f"run dir      {spec.run_dir}\nlaunching    {shlex.join(spec.cmd)}", flush=True)
    code = run_child(spec.cmd, spec.env)
    return code if code == 0 else report_failure(spec, code)


def report_failure(spec: LaunchSpec, code: int) -> int:
    """The ranks failed: say rank 0's error once (the launcher printed every child's traceback
    above), keep its exit code (2 for a config error), record the run as failed, and remove a
    run directory in which no run ever started."""
    from grpolab.run import run_dir as run_dirs
    from grpolab.run.record import RunInfo, now

    errors = run_dirs.rank_errors(spec.run_dir)
    if errors:
        first = errors[0]
        code = first.get("exit_code", code)
        print(f"\nerror (rank {first.get('rank', 0)}): {first.get('message')}", file=sys.stderr)
    if not run_dirs.started(spec.run_dir):
        for name in [*(p.name for p in spec.files), "launch_command.sh"]:
            (spec.run_dir / name).unlink(missing_ok=True)
        for path in (spec.run_dir / "logs").glob("error-rank*.json"):
            path.unlink()
        run_dirs.remove_if_empty(spec.run_dir / "logs")
        if run_dirs.remove_if_empty(spec.run_dir):
            print(f"removed {spec.run_dir}: the run never started", file=sys.stderr)
        return code
    info = RunInfo.load(spec.run_dir)
    if info.status in ("interrupted", "failed", "stopped") and info.exit_code:
        return info.exit_code  # the launcher maps every rank's exit to 1: rank 0's own code says more (3: guard stop)
    if info.status == "running":  # the ranks died without recording their end
        message = errors[0].get("message") if errors else f"the launcher exited with {code}"
        info.update(status="failed", ended=now(), exit_code=code, error=message)
        info.save(spec.run_dir)
    return code


def launch_command(plan, accelerate_config: Path, train_args: list[str]) -> list[str]:
    """GPU: accelerate launch with the per-run config file. CPU: torchrun, because accelerate's
    MULTI_CPU path starts a single process unless mpirun is used."""
    entry = ["-m", "grpolab", "train", *train_args]
    if plan.launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(plan.per_machine)]
        if plan.num_machines > 1:
            cmd += [
                "--nnodes",
                str(plan.num_machines),
                "--node_rank",
                str(plan.machine_rank),
                "--master_addr",
                str(plan.main_process_ip),
                "--master_port",
                str(plan.main_process_port),
            ]
        else:
            cmd += ["--standalone"]  # a free port, picked by torchrun
        return cmd + entry
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config)]
    if plan.num_machines > 1:  # on the command line: a shared config file must not decide a machine's rank
        cmd += ["--machine_rank", str(plan.machine_rank), "--main_process_ip", str(plan.main_process_ip)]
        cmd += ["--main_process_port", str(plan.main_process_port)]
    return cmd + entry


# The launcher kills ranks this long after passing on SIGTERM (torch's default is 30 s): long
# enough for the step in progress and a sharded checkpoint save.
SHUTDOWN_SECONDS = "300"


def run_child(cmd: list[str], env_added: dict) -> int:
    """Run the launcher and return its exit code. Ctrl-C reaches the ranks straight from the
    terminal (same process group), so it is ignored here rather than sent twice (a second
    Ctrl-C aborts without a checkpoint); SIGTERM sent to this process is passed on."""
    env = dict(os.environ, **env_added)
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", SHUTDOWN_SECONDS)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(cmd, env=env)
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum)),
    }
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def print_launch(spec: LaunchSpec) -> None:
    cmd, env_added, files, run_dir = spec.cmd, spec.env, spec.files, spec.run_dir
    print(f"run dir      {run_dir}{'' if run_dir.exists() else ' (created at launch)'}")
    for path, text in files.items():
        print(f"\n--- {path}\n{text.rstrip()}")
    if not files:
        print("(torchrun on CPU: no accelerate config file)")
    print("\ncommand:")
    print(" ".join(f"{k}={shlex.quote(v)}" for k, v in env_added.items()) + " " + shlex.join(cmd))


def _shell_script(cmd: list[str], env_added: dict) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env_added.items())
    return (
        "#!/bin/sh\n# The command grpolab ran to start this run.\ncd "
        f"{shlex.quote(os.getcwd())}\n{exports}exec {shlex.join(cmd)}\n"
    )
