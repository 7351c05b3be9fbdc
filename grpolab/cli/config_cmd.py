"""`grpolab config show|validate|explain|diff|set`. Reads and checks configs only: these
commands never import torch, transformers or trl, so they answer in a fraction of a second."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from grpolab.cli import tune_cmd
from grpolab.cli.common import add_layer_args, add_output, load, output_file, positive_int, print_rows, print_warnings
from grpolab.cli.experiment_cmd import register_import
from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.derive import derive
from grpolab.config.describe import all_keys, key_info, matches, one_line
from grpolab.config.errors import BAD_ARGUMENTS
from grpolab.config.files import copy_preset, minimize, new_config, origins_yaml, shipped
from grpolab.config.json_schema import schema_text
from grpolab.config.keys import MISSING, diff, lookup
from grpolab.config.layers import parse_assignments, preset_dir
from grpolab.config.schema import path_keys
from grpolab.config.trl_compat import check_installed
from grpolab.config.yaml_io import dump_yaml, edit_lock, inline_yaml, real_path, write_atomic
from grpolab.run.exit_codes import EXIT_OK, EXIT_USAGE
from grpolab.runtime import hardware
from grpolab.runtime.resolve import resolve
from grpolab.runtime.trl_args import to_trl_kwargs


def register(sub) -> None:
    config = sub.add_parser("config", help="show, validate, explain, diff and edit configs")
    csub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")

    show = csub.add_parser("show", help="print the resolved config (every value, defaults included)")
    add_layer_args(show)
    show.add_argument("--origins", action="store_true", help="end each line with where its value came from")
    show.set_defaults(func=cmd_show)

    validate = csub.add_parser("validate", help="check config files; exit 0 if all are valid, 2 otherwise")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--world-size", type=positive_int, help="also check for this many processes")
    # As for show and explain: a partial file (no `mode:`) is checked over the mode it will run in.
    validate.add_argument("--mode", help="local or cluster (default: each file's `mode:`, else local)")
    validate.set_defaults(func=cmd_validate)

    explain = csub.add_parser(
        "explain", help="print derived quantities: effective batch size, prompts per round, on-policy ..."
    )
    add_layer_args(explain)
    explain.add_argument(
        "--world-size", type=positive_int, help="processes (GPUs) the run will use (default: from the config, else 1)"
    )
    explain.add_argument("--dataset-size", type=positive_int, help="training prompts, for steps per epoch")
    explain.add_argument("--json", action="store_true", help="print JSON instead of a table")
    explain.add_argument("--key", metavar="KEY", help="explain one key: what it is, allowed values, value and origin")
    tune_cmd.add_memory_args(explain)  # --memory [--gpu-mem GB | --gpu NAME] [--model ...]: the memory plan
    explain.set_defaults(func=cmd_explain)

    diff = csub.add_parser("diff", help="show the keys whose resolved values differ between two configs")
    diff.add_argument("a", metavar="A")
    diff.add_argument("b", metavar="B")
    diff.set_defaults(func=cmd_diff)

    setp = csub.add_parser("set", help="edit a config file through the loader (comments kept, changes marked)")
    setp.add_argument("file", metavar="FILE")
    setp.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    add_output(setp, "-o", "--output", metavar="OUT", help="write here instead of editing FILE in place")
    setp.set_defaults(func=cmd_set)

    register_files(csub)  # schema, keys, new, minimize, ls, cp
    register_import(csub)  # `config import`: TRL recipe -> grpolab config
    tune_cmd.register_scale(csub)  # `config scale FILE --gpus N`


def cmd_show(args) -> int:
    loader = load(args)
    print(origins_yaml(loader) if args.origins else dump_yaml(loader.to_dict()), end="")
    return EXIT_OK


def cmd_validate(args) -> int:
    failed = 0
    for path in args.files:
        try:
            loader = GRPOConfigLoader(mode=args.mode, config_path=path, world_size=args.world_size)
        except ConfigError as exc:
            failed += 1
            print(f"{path}: {exc}", file=sys.stderr)
            continue
        print_warnings(loader)
        print(f"{path}: ok (mode {loader.mode}, world size {loader.target_world_size()})")
    return EXIT_USAGE if failed else EXIT_OK


def cmd_explain(args) -> int:
    if any(getattr(args, name, None) for name in ("memory", "gpu", "gpu_mem", "model", "prompt_tokens")):
        return tune_cmd.cmd_explain_memory(args)
    if args.key:
        return cmd_explain_key(args)
    loader = load(args, args.world_size)
    cfg, world = loader.config, loader.target_world_size()
    d = derive(cfg, world, args.dataset_size)
    # The decisions training would make here for this world size (no torch: facts from nvidia-smi and /proc).
    resolved = resolve(cfg, hardware.probe(use_torch=False), world_size=world)
    for problem in resolved.problems:
        print(f"warning: on this machine: {problem}", file=sys.stderr)
    check_installed(to_trl_kwargs(cfg, resolved))  # imports trl only when it is not the snapshot's version
    if args.json:
        print(json.dumps({**d.to_dict(), "runtime": resolved.to_dict()}, indent=2))
        return 0
    print(f"{args.config or loader.preset_path.name} (mode {cfg.mode})")
    print_rows(_derived_rows(cfg, d, world, args.dataset_size), "  ")
    print(f"  live guard (guard.*): {guard_text(cfg.guard)}")
    heading = "  decisions for this machine (the key in brackets overrides each):"
    print(heading, *(f"    {line}" for line in resolved.table()), sep="\n")
    return 0


def _derived_rows(cfg, d, world: int, dataset_size: int | None) -> list[tuple[str, str, str]]:
    """(label, value, how it is derived) for `config explain`'s table."""
    t, g = cfg.training, cfg.grpo
    P, GA = t.per_device_train_batch_size, t.gradient_accumulation_steps
    rows = [
        ("world size", f"{world}", "processes (GPUs); --world-size to change"),
        (
            "effective batch size",
            f"{d.effective_batch_size} = {P} x {GA} x {world}",
            "per_device_train_batch_size x gradient_accumulation_steps x world size",
        ),
        (
            "completions per round",
            f"{d.generation_batch_size}",
            "generation_batch_size" + (" (auto)" if g.generation_batch_size == "auto" else ""),
        ),
        (
            "unique prompts per round",
            f"{d.unique_prompts_per_round}",
            f"completions per round / num_generations {g.num_generations}",
        ),
        ("steps per generation", f"{d.steps_per_generation}", "micro-steps that consume one round"),
        (
            "optimizer steps per round",
            f"{d.optimizer_steps_per_round:g}",
            "steps_per_generation x num_iterations / gradient_accumulation_steps",
        ),
        (
            "on-policy",
            "yes" if d.on_policy else "no",
            "one optimizer step per round: clipping inactive"
            if d.on_policy
            else "several optimizer steps per round: clipping (epsilon) active",
        ),
        (
            "KL tracked",
            "yes" if d.kl_tracked else "no",
            f"beta {g.beta:g}" + ("" if d.kl_tracked else ": 0 disables KL"),
        ),
        ("reference model loaded", "yes" if d.reference_model else "no", d.reference_model_why),
        (
            "max completion tokens per round",
            f"{d.completion_tokens_per_round_max}",
            f"completions x max_completion_length {cfg.generation.max_completion_length}",
        ),
    ]
    if dataset_size is not None:
        rows += [
            (
                "optimizer steps per epoch",
                f"{d.optimizer_steps_per_epoch}",
                f"{d.generation_rounds_per_epoch} rounds of {d.unique_prompts_per_round} prompts from {dataset_size}",
            ),
            (
                "total optimizer steps",
                f"{d.total_optimizer_steps}",
                "training.max_steps" if t.max_steps > 0 else f"x num_train_epochs {t.num_train_epochs:g}",
            ),
        ]
    return rows


def guard_text(guard) -> str:
    """What the live guard will do, in one line: which findings stop, which warn, from when."""
    by_action = {a: [k for k, v in guard.kinds.items() if v == a] for a in ("stop", "warn")}
    parts = [f"{a} on {', '.join(kinds)}" for a, kinds in by_action.items() if kinds] or ["every finding off"]
    parts.append(f"from step {guard.min_steps}")
    forecast = f"forecast after step {guard.forecast_after}" if guard.forecast_after else "no forecast"
    return "; ".join(parts) + f"; {forecast}"


def cmd_diff(args) -> int:
    rows = diff(GRPOConfigLoader(config_path=args.a).to_dict(), GRPOConfigLoader(config_path=args.b).to_dict())
    if not rows:
        print("no differences in the resolved configs")
        return EXIT_OK
    shown = [(key, "  ->  ".join("(unset)" if v is MISSING else inline_yaml(v) for v in ab)) for key, *ab in rows]
    print_rows([("key", f"{args.a}  ->  {args.b}"), *shown])
    return EXIT_OK


def cmd_set(args) -> int:
    updates = dict(parse_assignments(args.assignments, "config set"))
    # A file inside grpolab/presets (configs/ links there), followed through links.
    if args.output is None and real_path(args.file).parent == preset_dir().resolve():
        # Every later run of that mode layers over it: a shipped preset changes only by a commit.
        raise ConfigError.of(
            "",
            "is a shipped preset; editing it in place would change every later run of its mode.",
            f"write a copy: `grpolab config set {args.file} {' '.join(args.assignments)} "
            f"-o configs/{Path(args.file).stem}_mine.yaml` (or start one with `grpolab config new`)",
            args.file,
            BAD_ARGUMENTS,
        )
    out = args.output or args.file
    # Read, change and write under the file's lock: a concurrent `config set` of the same file waits, then reads
    # this one's result, so neither edit is lost.
    with edit_lock(out):
        loader = GRPOConfigLoader(config_path=args.file)
        loader.update_params(updates)
        print_warnings(loader)
        path = loader.save_config(out, overwrite=args.output is None or args.force)
    print(f"wrote {path}: " + ", ".join(f"{k}={inline_yaml(v)}" for k, v in updates.items()))
    return EXIT_OK


# ----------------------------------------------------------------------------- schema, keys, files
def register_files(csub) -> None:
    schema = csub.add_parser("schema", help="print the JSON Schema of a config (editors complete and check keys)")
    add_output(schema, "-o", "--output", metavar="FILE", help="write it here instead of printing it")
    schema.set_defaults(func=cmd_schema)

    keys = csub.add_parser("keys", help="list every key with its one-line description, filtered by WORD")
    keys.add_argument(
        "word", nargs="?", metavar="WORD", help="e.g. lr, kl, vllm (in the key, its description or initials)"
    )
    keys.set_defaults(func=cmd_keys)

    new = csub.add_parser("new", help="write configs/NAME.yaml: `base:` plus only the keys you change")
    new.add_argument("name", type=output_file, metavar="NAME", help="configs/NAME.yaml (or a path ending in .yaml)")
    new.add_argument("--from", dest="source", required=True, metavar="FILE_OR_MODE", help="local, cluster, or a file")
    new.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="a changed key (repeatable)"
    )
    new.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    new.set_defaults(func=cmd_new)

    mini = csub.add_parser("minimize", help="rewrite a full config as `base:` plus the keys that differ")
    mini.add_argument("file", metavar="FILE")
    add_output(mini, "-o", "--output", metavar="OUT", help="write here instead of rewriting FILE")
    mini.add_argument("--base", metavar="FILE_OR_MODE", help="the base to compare with (default: FILE's mode preset)")
    mini.set_defaults(func=cmd_minimize)

    ls = csub.add_parser("ls", help="list the shipped presets (and your configs in ./configs)")
    ls.set_defaults(func=cmd_ls)

    cp = csub.add_parser("cp", help="copy a shipped preset to DEST, with a header naming its source")
    cp.add_argument("name", metavar="NAME", help="a name from `grpolab config ls` (local and cluster work too)")
    cp.add_argument("dest", metavar="DEST", help="a file, or a folder to copy into")
    cp.set_defaults(func=cmd_cp)


def cmd_schema(args) -> int:
    if args.output is None:
        print(schema_text(), end="")
        return EXIT_OK
    return _write_new(args.output, schema_text(), args.force)


def cmd_keys(args) -> int:
    rows = [(key, one_line(text)) for key, text in all_keys() if args.word is None or matches(args.word, key, text)]
    if not rows:
        fix = "try a shorter word, or no word for every key"
        raise ConfigError.of("", f"no key matches `{args.word}`.", fix, "config keys")
    print_rows(rows, strip=True)
    return EXIT_OK


def cmd_explain_key(args) -> int:
    info = key_info(args.key)
    loader = load(args, args.world_size)
    value = lookup(loader.to_dict(), args.key)
    rows = [("description", info.description), ("type", info.type)]
    if info.pass_through:
        rows.append(("default", f"TRL's: {inline_yaml(info.default)} (a pass-through TRL field)"))
    elif info.has_default:
        rows.append(("default", inline_yaml(info.default)))
    if info.recommended:
        rows.append(("recommended", info.recommended))
    if re.sub(r"\[\d+\]", "[]", args.key) in path_keys():
        relative = "a relative path starts from the current directory (on --resume, the run's own)"
        rows.append(("paths", f"{relative}; `~` is your home directory"))
    if value is MISSING:
        rows.append(("this config", "not set (TRL's default applies)" if info.pass_through else "not set"))
    else:
        rows.append(("this config", f"{inline_yaml(value)}  from {loader.origin_of(args.key)}"))
    rows += _resolved_rows(loader, args.key)
    rows.append(
        ("TRL field", f"GRPOConfig({info.trl_field}=...)" if info.trl_field else "none (used by grpolab itself)")
    )
    print(args.key)
    print_rows(rows, "  ")
    return EXIT_OK


def _resolved_rows(loader, key: str) -> list[tuple[str, str]]:
    """What an `auto` (or a value the launcher decides from) becomes on this machine, and why."""
    cfg, world = loader.config, loader.target_world_size()
    if key == "grpo.generation_batch_size":
        d = derive(cfg, world)
        return [("for this run", f"{d.generation_batch_size} completions per round (world size {world})")]
    resolved = resolve(cfg, hardware.probe(use_torch=False), world_size=world)
    return [
        ("on this machine", f"{d.label}: {d.value} ({d.reason})")
        for d in resolved.decisions
        if key in d.key.replace(",", " ").split()
    ]


def _write_new(path, text: str, force: bool) -> int:
    written = write_atomic(path, text, overwrite=force)
    print(f"wrote {written}")
    return EXIT_OK


def cmd_new(args) -> int:
    return _write_new(*new_config(args.name, args.source, args.overrides), args.force)


def cmd_minimize(args) -> int:
    with edit_lock(args.output or args.file):  # in place: read and rewrite FILE as one edit
        path, text = minimize(args.file, args.output, args.base)
        return _write_new(path, text, args.force or args.output is None)


def cmd_ls(args) -> int:
    # the kind column is 8 wide: `launcher`, the longest kind, is always shipped
    print_rows([(item.name, item.kind, item.description) for item in shipped()], strip=True)
    return EXIT_OK


def cmd_cp(args) -> int:
    return _write_new(*copy_preset(args.name, args.dest), False)
