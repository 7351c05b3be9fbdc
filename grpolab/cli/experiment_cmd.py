"""`grpolab runs list|show|annotate`, `grpolab compare`, `grpolab sweep` and `grpolab config import`:
the tuning loop from the terminal. Only `sweep` (through its trial subprocesses) trains;
the rest read run directories and configs and never import torch, transformers or trl."""

from __future__ import annotations

import sys

from grpolab.cli.common import add_output, count, output_file, positive_int
from grpolab.config.yaml_io import inline_yaml
from grpolab.run.exit_codes import EXIT_USAGE


def register(sub) -> None:
    runs = sub.add_parser("runs", help="list runs and write their outcomes into their configs")
    rsub = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")

    ls = rsub.add_parser("list", help="one line per run: name, start, config, status, steps, best reward, commit")
    ls.add_argument(
        "dirs", nargs="*", metavar="OUTPUT_DIR", help="output dirs or run dirs (default: every ./grpo_results* folder)"
    )
    ls.set_defaults(func=cmd_list)

    show = rsub.add_parser("show", help="a run's summary, its config origins and its sampled completions")
    show.add_argument("run_dir", metavar="RUN_DIR")
    show.add_argument("--completions", action="store_true", help="list the completions in completions.jsonl")
    show.add_argument("--step", type=int, metavar="N", help="only the completions of step N")
    show.add_argument(
        "--limit", type=positive_int, default=8, metavar="K", help="show at most K completions (default 8)"
    )
    show.set_defaults(func=cmd_show)

    ann = rsub.add_parser(
        "annotate", help="write the run's outcome as a comment block at the top of the config file it used"
    )
    ann.add_argument("run_dir", metavar="RUN_DIR")
    ann.add_argument("--note", help="your conclusion, e.g. 'reward climbs faster, KL doubles'")
    ann.add_argument(
        "--allow-changed",
        action="store_true",
        help="annotate a config whose values changed since the run (the block lists the changes)",
    )
    ann.set_defaults(func=cmd_annotate)

    cmp = sub.add_parser("compare", help="table of differing hyperparameters and metrics of runs, and a plot")
    cmp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (or output dirs holding them)")
    cmp.add_argument(
        "--metric", action="append", metavar="M", help="metric to sort by and plot (repeatable; default: reward)"
    )
    cmp.add_argument(
        "--out",
        type=output_file,
        metavar="PNG",
        help="plot file (default: compare.png in the first run's folder, not the current one)",
    )
    cmp.add_argument("--force", action="store_true", help="overwrite the --out file if it exists")
    cmp.add_argument(
        "--smooth", type=int, default=1, metavar="N", help="plot a moving average over N steps (raw points stay faint)"
    )
    cmp.set_defaults(func=cmd_compare)

    sw = sub.add_parser("sweep", help="write one config per trial (grid, random or optuna), train them, compare")
    sw.add_argument("sweep_file", metavar="SWEEP.yaml", help="see configs/sweeps/example_sweep.yaml")
    sw.add_argument("--dry-run", action="store_true", help="write the trial configs only")
    sw.add_argument("--force", action="store_true", help="replace trial files that exist with other content")
    sw.add_argument(
        "--parallel",
        type=positive_int,
        default=1,
        metavar="N",
        help="runs at once: here, each on its own CPU cores and GPUs; with --slurm, array tasks at once",
    )
    sw.add_argument(
        "--gpus-per-trial",
        type=count,
        metavar="G",
        help="GPUs for each run (default here: the visible GPUs shared out evenly; with --slurm: 0)",
    )
    slurm = sw.add_argument_group("SLURM (a job array through submitit: pip install submitit)")
    slurm.add_argument("--slurm", action="store_true", help="submit the runs to SLURM and collect their results")
    slurm.add_argument("--partition", metavar="P", help="SLURM partition (default: the cluster's)")
    slurm.add_argument(
        "--time", type=positive_int, metavar="MIN", help="time limit of each run in minutes (default 1440)"
    )
    slurm.add_argument("--cpus-per-trial", type=positive_int, metavar="C", help="CPU cores for each run")
    sw.set_defaults(func=cmd_sweep)


def register_import(csub) -> None:
    """`grpolab config import` (added to the `config` group by config_cmd.register)."""
    imp = csub.add_parser(
        "import", help="convert a flat TRL / Open-R1 recipe (trl grpo --config) into a grpolab config"
    )
    imp.add_argument("recipe", metavar="RECIPE.yaml")
    add_output(imp, "-o", "--output", metavar="OUT", help="write here (default: print to stdout)")
    imp.add_argument(
        "--mode",
        choices=("local", "cluster"),
        help="preset to layer over (default: cluster when the recipe uses vLLM or several processes)",
    )
    imp.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="GPUs the recipe is meant for: validated for N - K training processes, written as cluster.num_processes",
    )
    imp.add_argument(
        "--vllm-gpus", type=int, default=0, metavar="K", help="of those, GPUs running the vLLM server (default 0)"
    )
    imp.set_defaults(func=cmd_import)


def cmd_list(args) -> int:
    from grpolab.experiment.runs import GONE, default_dirs, find_runs, list_table
    from grpolab.experiment.tables import render_rows

    dirs = args.dirs or default_dirs()
    if not dirs:
        print("no runs: no ./grpo_results* folder here (pass output dirs)")
        return 0
    runs = find_runs(dirs)
    if not runs:
        print(f"no runs in {', '.join(map(str, dirs))}")
        return 0
    print(render_rows(list_table(runs)))
    if any(r.status == GONE for r in runs):
        print(f"\n{GONE}: recorded as running, but its process is gone (killed or crashed)")
    _say_unreadable(runs, sys.stdout)
    return 0


def _say_unreadable(runs, stream) -> None:
    """One line per run whose records hold a field of the wrong type, naming file and field."""
    for run in runs:
        if run.problems:
            print(f"unreadable {run.path}: {'; '.join(run.problems[:3])}", file=stream)


def cmd_show(args) -> int:
    from grpolab.experiment.show import show

    print(show(args.run_dir, completions=args.completions, step=args.step, limit=args.limit))
    return 0


def cmd_annotate(args) -> int:
    from grpolab.experiment.annotate import annotate

    path, block = annotate(args.run_dir, args.note, allow_changed=args.allow_changed)
    print(f"annotated {path}:\n{block}", end="")
    return 0


def cmd_compare(args) -> int:
    from grpolab.experiment.compare import check_metric, compare_table, plot
    from grpolab.experiment.runs import find_runs

    runs = find_runs(args.run_dirs)
    for run in runs:  # compare reads every config: an unreadable one is named with the rest
        run.config()
    _say_unreadable(runs, sys.stderr)
    unreadable = [r for r in runs if r.problems]
    runs = [r for r in runs if not r.problems]  # their numbers cannot be trusted: left out, and said
    if not runs:
        print("no runs found" if not unreadable else "no readable runs to compare", file=sys.stderr)
        return 2
    metrics = args.metric or ["reward"]
    for metric in metrics:
        check_metric(runs, metric)
    print(compare_table(runs, metrics[0], tuple(metrics[1:])))
    # Only where asked: a compare run from anywhere must not leave files in the current folder. An --out file
    # that exists is the user's: replaced only with --force. The default is compare's own.
    out = args.out if args.out is not None else runs[0].path / "compare.png"
    try:
        counts = plot(runs, metrics, out, smooth=max(1, args.smooth), overwrite=args.force or args.out is None)
    except ImportError:
        print("note: matplotlib is not installed; no plot (pip install matplotlib)", file=sys.stderr)
        return 0
    print(f"\nplot: {out} ({', '.join(f'{m}: {n} curves' for m, n in counts.items())})")
    return 0


def cmd_sweep(args) -> int:
    from grpolab.experiment.sweep import SlurmOptions, load_sweep, run_sweep

    slurm = None
    if args.slurm:
        slurm = SlurmOptions(
            partition=args.partition,
            gpus_per_trial=args.gpus_per_trial or 0,
            cpus_per_trial=args.cpus_per_trial,
            time_minutes=args.time or 24 * 60,
            parallel=args.parallel if args.parallel > 1 else None,
        )
    else:
        for flag in ("--partition", "--time", "--cpus-per-trial"):
            if getattr(args, flag[2:].replace("-", "_")):
                print(f"error: {flag}: applies to --slurm only. Fix: add --slurm, or drop {flag}", file=sys.stderr)
                return EXIT_USAGE
    return run_sweep(
        load_sweep(args.sweep_file),
        dry_run=args.dry_run,
        force=args.force,
        out=lambda line: print(line, flush=True),  # before the trial subprocess writes to the same terminal
        parallel=args.parallel,
        gpus_per_trial=args.gpus_per_trial,
        slurm=slurm,
    )


def cmd_import(args) -> int:
    from grpolab.experiment.recipe_import import import_recipe, write_imported

    imported = import_recipe(args.recipe, mode=args.mode, gpus=args.gpus, vllm_gpus=args.vllm_gpus)
    for key, value, why in imported.unmapped:
        print(f"not imported: {key}: {inline_yaml(value)} ({why})", file=sys.stderr)
    for dotted, (default, preset) in imported.pinned.items():
        print(
            f"pinned TRL default: {dotted}: {inline_yaml(default)} (the {imported.mode} "
            f"preset has {inline_yaml(preset)})",
            file=sys.stderr,
        )
    if args.output:
        path = write_imported(imported, args.output, force=args.force)
        print(
            f"wrote {path} (mode {imported.mode}; {len(imported.mapped)} keys mapped, "
            f"{len(imported.unmapped)} not imported, kept as comments)",
            file=sys.stderr,
        )
    else:
        print(imported.text, end="")
    return 0
