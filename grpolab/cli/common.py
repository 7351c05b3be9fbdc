"""Shared by the command modules: argparse types, the options that resolve a config, exit codes.
Imports nothing heavy (no torch, transformers or trl)."""

from __future__ import annotations

import argparse
import sys

from grpolab.config import GRPOConfigLoader
from grpolab.config.rules import INT64_MAX
from grpolab.config.yaml_io import folder_named


def _whole_number(minimum: int):
    """A count on the command line, in the range a config's integers have (torch and TRL take int64)."""

    def parse(text: str) -> int:
        allowed = f"a whole number from {minimum} to 2**63 - 1"
        try:
            value = int(text)
        except ValueError:  # words, and digit strings past Python's own parsing limit
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text[:40]!r}") from None
        if not minimum <= value <= INT64_MAX:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text[:40]}")
        return value

    return parse


positive_int = _whole_number(1)  # argparse type for --world-size, --dataset-size and other counts
count = _whole_number(0)  # argparse type for counts that may be 0 (--gpus-per-trial, --finding ...)


def output_file(text: str) -> str:
    """argparse type for a file a command writes: `x.yaml/` is refused, not written as x.yaml."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty. Fix: give the name of a file to write")
    problem = folder_named(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem.message}. Fix: {problem.fix}")
    return text


def add_layer_args(parser: argparse.ArgumentParser) -> None:
    """The options every command that resolves a config takes."""
    parser.add_argument("--mode", help="local or cluster (default: the file's `mode:`, else local)")
    parser.add_argument("--config", metavar="FILE", help="YAML file layered over the mode preset")
    add_set(parser, "override one key, e.g. --set grpo.beta=0.04 (repeatable)")


def add_set(parser: argparse.ArgumentParser, help: str) -> None:
    """The repeatable --set KEY=VALUE, collected in args.overrides."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def load(args, world_size: int | None = None) -> GRPOConfigLoader:
    """The loader for the options of add_layer_args; its warnings are printed."""
    loader = GRPOConfigLoader(mode=args.mode, config_path=args.config, overrides=args.overrides, world_size=world_size)
    print_warnings(loader)
    return loader


def print_warnings(loader: GRPOConfigLoader) -> None:
    for warning in loader.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def print_rows(rows, indent: str = "", strip: bool = False) -> None:
    """Print rows of strings with every column but the last left-aligned to its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        line = indent + "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]])
        print(line.rstrip() if strip else line)


def add_output(parser: argparse.ArgumentParser, *flags: str, metavar: str, help: str) -> None:
    """An option naming a file the command writes, and the --force that lets it replace one."""
    parser.add_argument(*flags, type=output_file, metavar=metavar, help=help)
    parser.add_argument("--force", action="store_true", help=f"overwrite {metavar} if it exists")
