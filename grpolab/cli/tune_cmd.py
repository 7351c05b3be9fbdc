"""`grpolab doctor`, `grpolab probe`, `grpolab config scale` and `grpolab config explain --memory`: the
tuning assistant (grpolab/tune/). Only `probe` imports torch; the others read configs and run files."""

from __future__ import annotations

import argparse
import json
import sys

from grpolab.cli.common import add_output, add_set, count, load, positive_int
from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.derive import derive
from grpolab.run.exit_codes import EXIT_OK


def _gib(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GiB as a number, e.g. 80, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of GiB, got {text}")
    return value


def register(sub) -> None:
    doctor = sub.add_parser("doctor", help="read runs' metrics and suggest the next config edit")
    doctor.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories made by grpolab train")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    add_output(doctor, "--write-config", metavar="OUT", help="write the next experiment's config (one run only)")
    doctor.add_argument(
        "--finding", metavar="ID", help="with --write-config: the finding to apply (default: the first)"
    )
    doctor.add_argument("--all", action="store_true", help="with --write-config: apply every finding's edit")
    doctor.add_argument(
        "--full", action="store_true", help="with --write-config: a full config instead of `base:` + the changes"
    )
    doctor.add_argument("--thresholds", action="store_true", help="print the threshold table and exit")
    doctor.set_defaults(func=cmd_doctor)

    probe = sub.add_parser("probe", help="sample the base model on a few prompts: is there a learning signal?")
    probe.add_argument("config", metavar="CONFIG", help="the config file to probe")
    probe.add_argument("--prompts", type=positive_int, default=32, help="prompts to sample (default 32)")
    probe.add_argument("--model", metavar="PATH", help="model to sample (default: the config's model)")
    add_set(probe, "override one key")
    probe.add_argument("--seed", type=int, default=None, help="sampling seed (default: training.seed)")
    add_output(probe, "--write-filtered", metavar="FILE", help="write prompts with 0 < pass rate < 1 as .jsonl")
    probe.add_argument("--json", action="store_true", help="print the report as JSON")
    probe.add_argument(
        "--forecast",
        action="store_true",
        help="time the config's first steps (guard.forecast_after) and print the whole run's projected time",
    )
    probe.set_defaults(func=cmd_probe)


# --------------------------------------------------------------------------- doctor
def cmd_doctor(args) -> int:
    from grpolab.tune import doctor, thresholds

    if args.thresholds:
        print(thresholds.table())
        return EXIT_OK
    if not args.runs:
        raise ConfigError.of("", "give at least one run directory.", "grpolab doctor RUN_DIR", "doctor")
    if (args.finding or args.all or args.full) and not args.write_config:
        raise ConfigError.of("", "--finding, --all and --full go with --write-config OUT.", None, "doctor")
    if args.write_config and len(args.runs) != 1:
        message = "--write-config writes the next experiment of one run; give one RUN_DIR."
        raise ConfigError.of("", message, None, "doctor")
    from grpolab.guard.recorded import stop_line, with_stop_finding

    runs = [doctor.load_run(run_dir) for run_dir in args.runs]
    reports = [(run, with_stop_finding(run.info, doctor.diagnose(run))) for run in runs]
    if args.json:
        rows = [
            {"run": str(r.path), "findings": [f.to_dict() for f in found], "notes": doctor.notes(r)}
            for r, found in reports
        ]
        print(json.dumps(rows, indent=2))
    else:
        texts = []
        for run, found in reports:  # a run the guard stopped says so under its heading
            head, _, rest = doctor.render(run, found).partition("\n")
            texts.append("\n".join([head, *filter(None, [stop_line(run.info), rest])]))
        print("\n\n".join(texts))
    if args.write_config:
        run, found = reports[0]
        chosen = found
        if args.finding:
            chosen = [f for f in found if f.id == args.finding]
            if not chosen:
                ids = ", ".join(f.id for f in found) or "none"
                message = f"no finding `{args.finding}` for this run; its findings: {ids}."
                raise ConfigError.of("", message, None, "--finding")
        elif not args.all:
            chosen = [f for f in found if f.edits][:1]  # change one thing at a time
        path, applied = doctor.write_next_config(run, chosen, args.write_config, force=args.force, full=args.full)
        stream = sys.stderr if args.json else sys.stdout
        print(f"\nwrote {path}: {', '.join(f.id for f in applied)}", file=stream)
        print(f"  train it: python -m grpolab train --config {path}", file=stream)
        others = [f.id for f in found if f.edits and f not in applied]
        if others:
            print(f"  other findings with an edit (--finding ID, or --all): {', '.join(others)}", file=stream)
    return EXIT_OK


# --------------------------------------------------------------------------- probe
def cmd_probe(args) -> int:
    if args.forecast:
        from grpolab.train.forecast_probe import forecast_config

        forecast, _ = forecast_config(args.config, tuple(args.overrides), model=args.model)
        if args.json:
            print(json.dumps(forecast.to_dict(), indent=2))
        else:
            print(forecast.line())
            print(
                f"             measured on this machine, 1 process, over {forecast.after_step} steps; nothing was kept"
            )
        return EXIT_OK
    from grpolab.train import probe

    loader = GRPOConfigLoader(config_path=args.config, overrides=args.overrides or None)
    report = probe.run_probe(loader, prompts=args.prompts, model=args.model, seed=args.seed)
    print(json.dumps(report.to_dict(), indent=2) if args.json else probe.render(report))
    if args.write_filtered:
        path, snippet = probe.write_filtered(report, args.write_filtered, force=args.force, config=args.config)
        stream = sys.stderr if args.json else sys.stdout
        print(
            f"\nwrote {path}: {report.mixed_count} of {len(report.prompts)} prompts (0 < pass rate < 1)", file=stream
        )
        print("  use it with:\n" + "\n".join("    " + line for line in snippet.splitlines()), file=stream)
    return EXIT_OK


# --------------------------------------------------------------------------- config explain --memory
def add_memory_args(explain) -> None:
    """Options of `config explain` that ask for the memory plan."""
    explain.add_argument("--memory", action="store_true", help="per-GPU memory plan by component")
    gpu = explain.add_mutually_exclusive_group()
    gpu.add_argument("--gpu-mem", type=_gib, metavar="GB", help="GPU memory in GiB (with --memory)")
    gpu.add_argument("--gpu", metavar="NAME", help="GPU model, e.g. h100, a100-40gb, l4 (with --memory)")
    explain.add_argument("--model", metavar="PATH_OR_PARAMS", help="model folder, cached Hub id, or a count like 1.5B")
    explain.add_argument(
        "--prompt-tokens", type=positive_int, metavar="N", help="prompt length for the plan (with --memory)"
    )


def cmd_explain_memory(args) -> int:
    from grpolab.tune import memory

    if not args.memory:
        message = "--gpu, --gpu-mem, --model and --prompt-tokens belong to the memory plan."
        raise ConfigError.of("", message, "add --memory", "config explain")
    loader = load(args, args.world_size)
    cfg, world = loader.config, loader.target_world_size()
    gpu = memory.gpu_memory(args.gpu) if args.gpu else args.gpu_mem
    shape = memory.resolve_shape(args.model or cfg.model.name_or_path)
    result = memory.plan(cfg, shape, world, gpu, args.prompt_tokens)
    if args.json:
        print(json.dumps({"derived": derive(cfg, world).to_dict(), "memory": result.to_dict()}, indent=2))
    else:
        print(memory.render(result))
    return EXIT_OK


# --------------------------------------------------------------------------- config scale
def register_scale(csub) -> None:
    scale = csub.add_parser("scale", help="rewrite a config for N GPUs, keeping prompts per step and the batch")
    scale.add_argument("file", metavar="FILE")
    scale.add_argument("--gpus", type=positive_int, required=True, help="GPUs (processes) of the new run")
    scale.add_argument("--vllm-gpus", type=count, default=0, help="of those, GPUs for a vLLM server")
    scale.add_argument(
        "--from-world-size", type=positive_int, help="processes FILE was tuned for (default: from the file)"
    )
    add_output(scale, "-o", "--output", metavar="OUT", help="write here (default: print the YAML)")
    scale.set_defaults(func=cmd_scale)


def cmd_scale(args) -> int:
    from grpolab.tune import scale

    loader, reasons, rows, notes = scale.scale_config(args.file, args.gpus, args.vllm_gpus, args.from_world_size)
    text = scale.scaled_text(loader, reasons, rows, args.file, args.gpus, args.vllm_gpus)
    world = args.gpus - args.vllm_gpus
    if args.output:
        path = scale.write(text, args.output, args.force, world)
        print(scale.render_table(rows))
        print(f"\nwrote {path} (valid for {world} training processes)")
    else:
        print(text, end="")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK
