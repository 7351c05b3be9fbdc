"""TrainRequest: what one `grpolab train` / `python training/grpo_training.py` call asks for. The parser
is built from its fields and `to_argv()` turns it back into flags (launched ranks, the SLURM script,
sweep trials), so a flag added here reaches all of them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace


def _flag(name: str, help: str, kind: str = "value", metavar: str | None = None):
    """A request field and its flag: a value (None unless given), a switch, or a repeatable list."""
    default = {"value": None, "switch": False, "list": ()}[kind]
    return field(default=default, metadata={"flag": name, "help": help, "kind": kind, "metavar": metavar})


@dataclass(frozen=True)
class TrainRequest:
    model: str | None = _flag(
        "--model", "Hub id or local path (sets model.name_or_path); default: the embedded demo model"
    )
    mode: str | None = _flag("--mode", "local or cluster (default: the file's `mode:`, else local)")
    config: str | None = _flag("--config", "YAML file layered over the mode preset", metavar="FILE")
    overrides: tuple[str, ...] = _flag(
        "--set", "override one key, e.g. --set grpo.beta=0.04 (repeatable)", "list", metavar="KEY=VALUE"
    )
    output_dir: str | None = _flag("--output-dir", "parent folder of the run directory (sets output_dir)")
    run_name: str | None = _flag("--run-name", "run directory name (default: <config stem>_<timestamp>)")
    resume: str | None = _flag(
        "--resume", "continue a run from its last checkpoint, with its resolved config", metavar="RUN_DIR"
    )
    force: bool = _flag("--force", "with --resume: accept a config that differs from the run's", "switch")
    dry_run: bool = _flag("--dry-run", "check config, model, data and rewards, print the plan, do not train", "switch")
    print_launch_command: bool = _flag(
        "--print-launch-command",
        "print the launch command (and accelerate config) that would run, then exit",
        "switch",
    )

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        for f in fields(TrainRequest):
            meta = f.metadata
            how = {"switch": {"action": "store_true"}, "list": {"action": "append", "default": []}}
            metavar = {} if meta["kind"] == "switch" else {"metavar": meta["metavar"]}
            parser.add_argument(meta["flag"], dest=f.name, help=meta["help"], **how.get(meta["kind"], {}), **metavar)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainRequest:
        values = {f.name: getattr(args, f.name) for f in fields(cls)}
        values["overrides"] = tuple(values["overrides"] or ())
        return cls(**values)

    def to_argv(self) -> list[str]:
        argv: list[str] = []
        for f in fields(self):
            value, flag = getattr(self, f.name), f.metadata["flag"]
            if f.metadata["kind"] == "switch":
                argv += [flag] if value else []
            elif f.metadata["kind"] == "list":
                argv += [part for item in value for part in (flag, item)]
            elif value is not None:
                argv += [flag, str(value)]
        return argv

    def for_ranks(self) -> TrainRequest:
        """What every launched rank runs: the same request, training (the parent already
        printed the plan or the launch command)."""
        return replace(self, dry_run=False, print_launch_command=False)

    def flags(self) -> dict:
        """Explicit flags: the top layer of the config."""
        given = {"model.name_or_path": self.model, "output_dir": self.output_dir}
        return {key: value for key, value in given.items() if value}

    def gives_model(self) -> bool:
        """A model named by a flag, a file, or `--set` (`model.name_or_path=X` or `model={name_or_path: X}`)."""
        for override in self.overrides:
            key, _, value = override.partition("=")
            if key.strip() == "model.name_or_path" or (key.strip() == "model" and "name_or_path" in value):
                return True
        return bool(self.model or self.config)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="GRPO training (TRL) from a grpolab config.")
    TrainRequest.add_arguments(parser)
    return parser
