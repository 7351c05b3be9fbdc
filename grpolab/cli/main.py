"""`grpolab` entry point. Subcommands import their heavy dependencies only when they run."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata

from grpolab.config import ConfigError
from grpolab.config.errors import cli_audience
from grpolab.run.exit_codes import EXIT_SIGNAL, EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grpolab", description="GRPO training on TRL, configured by YAML.")
    try:  # the installed distribution's version; a checkout run without installing says so
        version = metadata.version("grpolab")
    except metadata.PackageNotFoundError:
        version = "(not installed: run from a checkout)"
    parser.add_argument("--version", action="version", version=f"grpolab {version}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from grpolab.cli import config_cmd, experiment_cmd, launch_cmd, train_cmd, tune_cmd

    for module in (config_cmd, train_cmd, experiment_cmd, launch_cmd, tune_cmd):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from grpolab.config.yaml_io import forget_reads

    with cli_audience():  # errors from shared code give command-line advice (--force, not overwrite=True)
        args = build_parser().parse_args(argv)
        forget_reads()  # a command edits the files as it reads them, not as an earlier command did
        try:
            return args.func(args) or 0
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_SIGNAL["SIGINT"]
        except BrokenPipeError:
            # `grpolab ... | head`: the reader left, which is no error of the command. Point stdout at
            # /dev/null so that Python's own flush at exit does not raise again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141  # 128 + SIGPIPE, as a shell reports a command whose reader left


if __name__ == "__main__":
    sys.exit(main())
