"""Run a launch that `decide` planned: write the per-run accelerate files and the command into
the run directory, then start the launcher and pass its exit code back."""

from __future__ import annotations

import collections
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from grpolab.launch.accelerate_files import write_files
from grpolab.run import run_dir as run_dirs
from grpolab.run.rank_logs import rank_log
from grpolab.run.record import RunInfo, now

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
            run_dirs.remove_if_empty(spec.run_dir)
            raise
    spec.run_dir.mkdir(parents=True, exist_ok=True)  # made already, unless shared or resumed
    write_files(spec.files)
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in spec.env.items())
    (spec.run_dir / "launch_command.sh").write_text(
        "#!/bin/sh\n# The command grpolab ran to start this run.\n"
        f"cd {shlex.quote(os.getcwd())}\n{exports}exec {shlex.join(spec.cmd)}\n"
    )
    print(f"run dir      {spec.run_dir}\nlaunching    {shlex.join(spec.cmd)}", flush=True)
    console = TracebackFilter()
    code = run_child(spec.cmd, spec.env, rank_log(spec.run_dir, 0), console)
    if code == 0 and console.held:
        print(f"note: the ranks printed tracebacks they recovered from; see {rank_log(spec.run_dir, 0)}")
    return code if code == 0 else report_failure(spec, code, console.held)


def report_failure(spec: LaunchSpec, code: int, held=()) -> int:
    """The ranks failed: say the first failed rank's error once, with its log (the tracebacks of the ranks and the
    launcher stay in the logs), keep its exit code (2 for a config error), record it as the run's error, and remove a
    run directory in which no run ever started. The first to fail, by time, is the cause: the ranks that fail after it
    usually only saw their peer vanish. `held`: the tracebacks kept off the console, shown when no rank said why."""
    first = next(iter(run_dirs.rank_errors(spec.run_dir)), None)
    started = run_dirs.started(spec.run_dir)
    info = RunInfo.load(spec.run_dir) if started else None
    ended = info is not None and info.status in ("interrupted", "failed", "stopped") and info.exit_code
    if first is not None:
        rank = first.get("rank", 0)
        code = first["exit_code"] if isinstance(first.get("exit_code"), int) else code
        log = rank_log(spec.run_dir, rank)
        where = f"\n  its full output: {log}" if started and log.is_file() else ""
        print(f"\nerror (rank {rank}): {first.get('message')}{where}", file=sys.stderr)
    elif not ended:  # no rank said why: the tracebacks are all there is
        print("\n".join(held), file=sys.stderr)
    if not started:
        logs = spec.run_dir / "logs"
        for path in [*spec.files, spec.run_dir / "launch_command.sh"]:
            (spec.run_dir / path.name).unlink(missing_ok=True)
        for path in [*logs.glob("error-rank*.json"), *logs.glob("rank*.log")]:
            path.unlink()
        run_dirs.remove_if_empty(logs)
        if run_dirs.remove_if_empty(spec.run_dir):
            print(f"removed {spec.run_dir}: the run never started", file=sys.stderr)
        return code
    if first is not None and info.status in ("running", "failed"):
        info.update(status="failed", ended=info.ended or now(), exit_code=code, error=first.get("message"))
        info.update(failed_rank=first.get("rank", 0))
        info.save(spec.run_dir)
        return code
    if ended:
        return info.exit_code  # the launcher maps every rank's exit to 1: rank 0's own code says more (3: guard stop)
    if info.status == "running":  # the ranks died without recording their end
        info.update(status="failed", ended=now(), exit_code=code, error=f"the launcher exited with {code}")
        info.save(spec.run_dir)
    return code


def launch_command(plan, accelerate_config: Path, train_args: list[str]) -> list[str]:
    """GPU: accelerate launch with the per-run config file. CPU: torchrun, because accelerate's
    MULTI_CPU path starts a single process unless mpirun is used."""
    entry = ["-m", "grpolab", "train", *train_args]
    if plan.launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(plan.per_machine)]
        if plan.num_machines == 1:
            return [*cmd, "--standalone", *entry]  # a free port, picked by torchrun
        cmd += ["--nnodes", str(plan.num_machines), "--node_rank", str(plan.machine_rank)]
        return [*cmd, "--master_addr", str(plan.main_process_ip), "--master_port", str(plan.main_process_port), *entry]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config)]
    if plan.num_machines > 1:  # on the command line: a shared config file must not decide a machine's rank
        cmd += ["--machine_rank", str(plan.machine_rank), "--main_process_ip", str(plan.main_process_ip)]
        cmd += ["--main_process_port", str(plan.main_process_port)]
    return cmd + entry


# The launcher kills ranks this long after passing on SIGTERM (torch's default is 30 s): long enough for the step in
# progress and a sharded checkpoint save.
SHUTDOWN_SECONDS = "300"


def run_child(cmd: list[str], env_added: dict, log: Path | None = None, console: TracebackFilter | None = None) -> int:
    """Run the launcher and return its exit code. Ctrl-C reaches the ranks straight from the terminal (same process
    group), so it is ignored here rather than sent twice (a second Ctrl-C aborts without a checkpoint); SIGTERM
    sent to this process is passed on. With `log`, what the launcher prints (rank 0's output: the other ranks write
    to their own logs) is copied there as it passes to the console, its stderr through `console`."""
    env = dict(os.environ, **env_added)
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", SHUTDOWN_SECONDS)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    if log is not None:
        env.setdefault("PYTHONUNBUFFERED", "1")  # through a pipe, Python would hold lines back
        log.parent.mkdir(parents=True, exist_ok=True)
    pipe = subprocess.PIPE if log is not None else None
    proc = subprocess.Popen(cmd, env=env, stdout=pipe, stderr=pipe)
    copies = _copy_output(proc, log, console) if log is not None else []
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum)),
    }
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for copy in copies:
            copy.join()
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def _copy_output(proc: subprocess.Popen, log: Path, console: TracebackFilter | None) -> list[threading.Thread]:
    """Two threads: the child's stdout and stderr, each to `log` and to this process's own stream
    (stderr through `console`)."""
    handle = log.open("ab")
    lock = threading.Lock()
    open_streams = [2]

    def copy(source, target, shown) -> None:
        for chunk in iter(lambda: os.read(source.fileno(), 65536), b""):
            with lock:
                handle.write(chunk)
                handle.flush()
            target.buffer.write(shown(chunk)) if hasattr(target, "buffer") else target.write(shown(chunk).decode())
            target.flush()
        with lock:
            open_streams[0] -= 1
            if not open_streams[0]:
                handle.close()

    stderr_shown = console.feed if console else lambda chunk: chunk
    pairs = ((proc.stdout, sys.stdout, lambda chunk: chunk), (proc.stderr, sys.stderr, stderr_shown))
    threads = [threading.Thread(target=copy, args=args, daemon=True) for args in pairs]
    for thread in threads:
        thread.start()
    return threads


class TracebackFilter:
    """The launcher's stderr as the console shows it: Python tracebacks (a failed rank's, rank 0's
    "Connection closed by peer" after it, torchrun's ChildFailedError with its report) are held
    back, since the launcher then names the first failed rank's error in one line and the logs
    keep them whole. A line still being written (progress bars redraw with \\r) shows at once.
    torch prefixes a rank's traceback lines with "[rankN]: " once its process group is up."""

    START = "Traceback (most recent call last):"
    CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
    RANK_PREFIX = re.compile(r"\[rank\d+\]: ?")

    def __init__(self) -> None:
        self.held: collections.deque[str] = collections.deque(maxlen=2000)
        self._state = None  # None, "traceback", "raised" (its last line seen) or "report" (torchrun's)
        self._partial = b""  # the start of a line not shown yet
        self._mid_line = False  # the start of this line was shown: the rest follows unfiltered
        self._after_cr = False  # the last piece ended with \r: a progress bar is being redrawn

    def feed(self, chunk: bytes) -> bytes:
        shown = []
        # A progress bar redraws with \r and no newline, so a traceback can start right after one on the same
        # line: \r ends a piece to filter as \n does.
        *pieces, self._partial = re.split(rb"(\r\n|\r|\n)", self._partial + chunk)
        for text, end in zip(pieces[::2], pieces[1::2]):
            shown += self._filtered(text.decode(errors="replace"), end)
            self._mid_line, self._after_cr = False, end == b"\r"
        if self._mid_line or (self._after_cr and self._partial and self._state is None):
            # A progress bar frame shows as it is drawn, all but a tail that may begin a traceback.
            text = self._partial.decode(errors="replace")
            safe = next((k for k in range(len(text)) if text[k] in "[T" and self._may_start(text[k:])), len(text))
            if safe:
                shown.append(text[:safe].encode())
                self._partial, self._mid_line = text[safe:].encode(), True
        return b"".join(shown)

    def _filtered(self, text: str, end: bytes) -> list[bytes]:
        """One finished piece. A traceback can begin inside a piece: after a progress bar frame
        already shown, or in another rank's unfinished line (ranks share the pipe). The text
        before it ends its own line; the traceback is held."""
        start = text.find(self.START) if self._state is None else -1
        prefix = re.search(r"\[rank\d+\]: ?$", text[:start]) if start > 0 else None
        cut = prefix.start() if prefix else start
        if start >= 0 and (cut > 0 or self._mid_line):
            before, text, bar = text[:cut], text[cut:], self._mid_line
            self._mid_line = False
            return [(before + "\n").encode()] * bool(before.strip() or bar) + self._filtered(text, end)
        if self._mid_line or self._show(text):
            return [text.encode() + end]
        return []

    def _may_start(self, partial: str) -> bool:
        """Whether an unfinished line may still turn out to start a traceback."""
        if "[rank".startswith(partial[:5]) and not self.RANK_PREFIX.match(partial):
            return len(partial) < 16  # a prefix being written
        body = self.RANK_PREFIX.sub("", partial, count=1)
        return self.START.startswith(body[: len(self.START)])

    def _show(self, line: str) -> bool:
        body = self.RANK_PREFIX.sub("", line, count=1)
        if self._state is None and not body.startswith(self.START):
            return True
        if self._state is None:
            self._state = "traceback"
        elif self._state == "traceback" and body[:1].strip() and not body.startswith(("Traceback", *self.CHAINED)):
            self._state = "raised"  # the exception's own line
        elif self._state == "raised" and body.startswith(self.CHAINED):
            self._state = "traceback"
        elif self._state == "raised" and body.startswith("====="):
            self._state = "report"
        elif self._state == "raised" and body.strip():
            self._state = None
            return self._show(line)
        elif self._state == "report" and body.startswith("====="):
            self._state = None
        self.held.append(line)
        return False


def print_launch(spec: LaunchSpec) -> None:
    print(f"run dir      {spec.run_dir}{'' if spec.run_dir.exists() else ' (created at launch)'}")
    for path, text in spec.files.items():
        print(f"\n--- {path}\n{text.rstrip()}")
    if not spec.files:
        print("(torchrun on CPU: no accelerate config file)")
    print("\ncommand:\n" + " ".join(f"{k}={shlex.quote(v)}" for k, v in spec.env.items()) + " " + shlex.join(spec.cmd))
