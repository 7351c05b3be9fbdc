"""The exit codes of every grpolab command and run, recorded in run_info.json as `exit_code`."""

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and failed (a training run that crashed or diverged)
EXIT_USAGE = 2  # bad input: an invalid config, flag or file; nothing was started or written
# The live guard stopped the run (`guard:` set the finding to `stop`): a checkpoint was saved and
# run_info.json / summary.json say which finding; a sweep records it as a trial result, not a crash.
EXIT_GUARD_STOP = 3
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal number, as shells report it
EXIT_INTERRUPTED = tuple(EXIT_SIGNAL.values())
