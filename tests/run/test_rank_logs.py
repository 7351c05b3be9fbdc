"""The first rank to fail is the error the user sees (launch/execute.report_failure), for every
rank of every world size; the launcher's copy of rank 0's output (run_child's log)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from grpolab.launch import execute
from grpolab.run import run_dir as run_dirs
from grpolab.run.rank_logs import rank_log
from grpolab.run.record import RunInfo


def _spec(run_dir: Path) -> execute.LaunchSpec:
    return execute.LaunchSpec(cmd=["true"], env={}, files={}, run_dir=run_dir)


def _started(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    RunInfo(run_name=run_dir.name, status="running").save(run_dir)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_every_rank_failing_first_is_the_one_reported_and_recorded(tmp_path, capsys, world):
    for first in range(world):
        run_dir = tmp_path / f"w{world}-first{first}"
        _started(run_dir)
        # The others fail later, each with the fallout of a vanished peer (rank 0 records that too).
        order = [first] + [r for r in range(world) if r != first]
        for position, rank in enumerate(order):
            message = f"boom on rank {rank}" if rank == first else "Connection closed by peer"
            code = 7 if rank == first else 1
            run_dirs.record_rank_error(run_dir, rank, code, message)
            path = run_dir / "logs" / f"error-rank{rank}.json"
            record = json.loads(path.read_text())
            path.write_text(json.dumps({**record, "time": 1000.0 + position}))  # a clear order
        assert execute.report_failure(_spec(run_dir), 1) == 7
        err = capsys.readouterr().err
        assert err.count("error (rank") == 1 and f"error (rank {first}): boom on rank {first}" in err
        info = json.loads((run_dir / "run_info.json").read_text())
        assert (info["status"], info["failed_rank"], info["exit_code"]) == ("failed", first, 7)
        assert info["error"] == f"boom on rank {first}"


def test_a_rank_keeps_its_first_error(tmp_path):
    run_dirs.record_rank_error(tmp_path, 1, 1, "the cause")
    run_dirs.record_rank_error(tmp_path, 1, 1, "the fallout")
    assert [e["message"] for e in run_dirs.rank_errors(tmp_path)] == ["the cause"]


def test_unreadable_or_odd_error_records_are_skipped_not_a_crash(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "error-rank0.json").write_text("{torn")
    (logs / "error-rank1.json").write_text('["not a dict"]')
    (logs / "error-rank2.json").write_text('{"rank": 2, "time": "soon", "message": "m"}')
    assert [e["rank"] for e in run_dirs.rank_errors(tmp_path)] == [2]


def test_a_run_that_never_started_loses_its_logs_with_its_folder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dirs.record_rank_error(run_dir, 1, 2, "invalid config: x")
    rank_log(run_dir, 1).write_text("rank 1 said this\n")
    assert execute.report_failure(_spec(run_dir), 1) == 2
    assert "error (rank 1): invalid config: x" in capsys.readouterr().err and not run_dir.exists()


def test_run_child_copies_the_launchers_output_to_the_log_and_the_console(tmp_path, capfd):
    log = tmp_path / "logs" / "rank0.log"
    script = "import sys; print('out line'); print('err line', file=sys.stderr); sys.exit(3)"
    assert execute.run_child([sys.executable, "-c", script], {}, log) == 3
    captured = capfd.readouterr()
    assert "out line" in captured.out and "err line" in captured.err
    assert "out line" in log.read_text() and "err line" in log.read_text()


def test_a_rank_other_than_zero_writes_to_its_own_log(tmp_path):
    import subprocess

    script = (
        "import sys, os; from grpolab.run.rank_logs import send_output_to_log; "
        f"send_output_to_log({str(tmp_path)!r}, 1); print('to the file'); "
        "os.write(2, b'c-level stderr\\n'); raise SystemExit('dying words')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == "" and done.stderr == ""
    text = rank_log(tmp_path, 1).read_text()
    assert "to the file" in text and "c-level stderr" in text and "dying words" in text


# What torchrun's stderr carries when rank 1 fails: rank 0's gloo traceback (chained), then the
# launcher's own ChildFailedError with its report, between lines the user should still see.
LAUNCHER_STDERR = """\
step 1/3 loss 0.12
[rank0]: Traceback (most recent call last):
[rank0]:   File "/x/trainer.py", line 10, in step
[rank0]:     all_reduce(t)
[rank0]: RuntimeError: [gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:5
[rank0]:
[rank0]: During handling of the above exception, another exception occurred:
[rank0]:
[rank0]: Traceback (most recent call last):
[rank0]:   File "<frozen runpy>", line 198, in _run_module_as_main
[rank0]: ValueError: wrapped
[rank0] is not a prefix of a traceback
Traceback (most recent call last):
  File "/x/launcher.py", line 1, in <module>
KeyError: 'x'
W1206 12:00:00.000 1 torch/distributed/elastic/multiprocessing/api.py:900] Sending process 2 closing signal SIGTERM
Traceback (most recent call last):
  File "/venv/bin/torchrun", line 8, in <module>
    sys.exit(main())
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
grpolab FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  rank      : 1 (local_rank: 1)
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
after the report
"""
KEPT = ["step 1/3 loss 0.12", "[rank0] is not", "W1206 12:00:00.000 1 torch/distributed", "after the report"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 64, 1 << 16])
def test_the_console_gets_no_traceback_in_any_chunking(size):
    """The launcher's stderr cut into chunks of every size (pipes deliver any split): the
    tracebacks and torchrun's report are held back whole, every other line shows, unchanged."""
    console = execute.TracebackFilter()
    data = LAUNCHER_STDERR.encode()
    shown = b"".join(console.feed(data[i : i + size]) for i in range(0, len(data), size)).decode()
    assert "Traceback" not in shown and "ChildFailedError" not in shown and "Root Cause" not in shown, shown
    assert "During handling" not in shown and "Connection closed" not in shown, shown
    assert [line for line in shown.splitlines() if line] == [
        line for line in LAUNCHER_STDERR.splitlines() if any(line.startswith(k) for k in KEPT)
    ]
    held = "\n".join(console.held)
    assert "Connection closed by peer" in held and "ChildFailedError" in held and "Root Cause" in held


BAR_THEN_TRACEBACK = (  # as torchrun delivered it: the bar's first frame, then rank 0's traceback
    b"step 1\n\r 50%|#####     | 5/10 [00:01<00:01, 4.2it/s][rank0]: Traceback (most recent call last):\n"
    b'[rank0]:   File "x.py", line 1, in <module>\n[rank0]: RuntimeError: Connection closed by peer\nafter\n'
)


# Two ranks share the pipe: rank 0's traceback starts in the middle of rank 1's unfinished line.
INTERLEAVED = (
    b"I1207 rank 1 says hel[rank0]: Traceback (most recent call last):\n"
    b'[rank0]:   File "x.py", line 1, in <module>\n[rank0]: RuntimeError: Connection closed by peer\nafter\n'
)


@pytest.mark.parametrize("data", [BAR_THEN_TRACEBACK, INTERLEAVED], ids=["bar", "interleaved"])
@pytest.mark.parametrize("size", [1, 2, 5, 13, 1 << 16])
def test_a_traceback_that_starts_inside_a_line_is_held(size, data):
    console = execute.TracebackFilter()
    shown = b"".join(console.feed(data[i : i + size]) for i in range(0, len(data), size)).decode()
    assert "Traceback" not in shown and "Connection closed" not in shown, shown
    assert shown.endswith("after\n") and ("5/10" in shown or "I1207 rank 1 says hel\n" in shown), shown
    assert "Connection closed by peer" in "\n".join(console.held)


def test_a_progress_line_shows_before_its_newline():
    console = execute.TracebackFilter()
    assert console.feed(b"\r 40%|####") == b"\r 40%|####"
    assert console.feed(b"  | 4/10\r 50%") == b"  | 4/10\r 50%"
    assert console.feed(b"|#####\nTraceback (most") == b"|#####\n"  # a traceback's start is held
    assert console.feed(b" recent call last):\n  File x\nKeyError: 1\nnext\n") == b"next\n"


def test_tracebacks_nobody_explained_are_shown_at_the_end(tmp_path, capsys):
    """A rank that died without recording why (no error-rank file): the held tracebacks are the
    only account, so they are printed after all."""
    run_dir = tmp_path / "run"
    _started(run_dir)
    assert execute.report_failure(_spec(run_dir), 1, ["Traceback (most recent call last):", "OSError: disk"]) == 1
    assert "OSError: disk" in capsys.readouterr().err
    run_dirs.record_rank_error(run_dir, 1, 1, "boom")
    rank_log(run_dir, 1).write_text("rank 1's traceback\n")
    execute.report_failure(_spec(run_dir), 1, ["Traceback (most recent call last):", "OSError: disk"])
    err = capsys.readouterr().err
    assert "OSError" not in err and "error (rank 1): boom" in err and str(rank_log(run_dir, 1)) in err
