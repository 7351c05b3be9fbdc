"""Arguments of `python training/grpo_training.py` and `grpolab train` (identical)."""

from __future__ import annotations

import argparse

from grpolab.cli.config_cmd import add_layer_args


def add_train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", help="Hub id or local path (sets model.name_or_path); default: the embedded demo model"
    )
    add_layer_args(parser)
    parser.add_argument("--output-dir", help="parent folder of the run directory (sets output_dir)")
    parser.add_argument("--run-name", help="run directory name (default: <config stem>_<timestamp>)")
    parser.add_argument(
        "--dry-run", action="store_true", help="check config, model, data and rewards, print the plan, do not train"
    )
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint, with its resolved config"
    )
    parser.add_argument(
        "--force", action="store_true", help="with --resume: accept a config that differs from the run's"
    )
    parser.add_argument(
        "--print-launch-command",
        action="store_true",
        help="print the launch command (and accelerate config) that would run, then exit",
    )


def flags_from_args(args) -> dict:
    """Explicit flags: the top layer of the config."""
    flags = {}
    if args.model:
        flags["model.name_or_path"] = args.model
    if args.output_dir:
        flags["output_dir"] = args.output_dir
    return flags
