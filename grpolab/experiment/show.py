"""`grpolab runs show RUN`: one run's summary, where its config values came from, and the
completions it sampled (completions.jsonl), read from the run directory alone."""

from __future__ import annotations

from grpolab.config import ConfigError
from grpolab.config.yaml_io import inline_yaml, read_yaml_file, to_plain
from grpolab.run import metrics as run_metrics
from grpolab.run.run_dir import OVERRIDES

from .compare import seed_siblings
from .runs import Run, commit_of, load_run
from .stats import LEVEL
from .tables import fmt, pct, render_rows

TEXT_WIDTH = 160  # prompts and completions longer than this are cut in the listing


def _cut(text, width: int = TEXT_WIDTH) -> str:
    text = (text if isinstance(text, str) else inline_yaml(text)).replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def summary_lines(run: Run) -> list[str]:
    info = run.info
    lines = [
        f"run       {run.name} ({run.status}, {run.steps} steps)",
        f"dir       {run.path}",
        f"config    {info.config_file or '(preset)'}; commit {commit_of(info)}",
    ]
    if info.started:
        runtime = f"training {run.runtime():.1f} s" if run.runtime() is not None else "runtime unknown"
        lines.append(f"time      {info.started} -> {info.ended or '...'}; {runtime}")
    if info.error:
        lines.append(f"error     {info.error}")
    if keys := sorted(set(run.summary.final) | set(run.summary.best)):
        rows = [["METRIC", "FINAL", "BEST"]] + [[k, fmt(run.final(k)), fmt(run.best(k))] for k in keys]
        lines += ["", *render_rows(rows).splitlines()]
    before, after = run.eval_accuracy()
    if before is not None or after is not None:
        lines.append(f"\nheld-out accuracy {pct(before)} -> {pct(after)}")
    group = seed_siblings(run)
    if group.n > 1:
        lines.append(
            f"\nseed group: {group.n} runs of this config (seeds {', '.join(map(str, group.seeds))}); "
            f"final reward {group.text('reward')} (mean ± {LEVEL:.0%} CI)"
        )
    return lines


def origin_lines(run: Run) -> list[str]:
    """Where the config's values came from: recorded origins, else what --set and flags changed."""
    if run.info.origins:
        rows = [["KEY", "FROM"]] + [[k, str(v)] for k, v in run.info.origins.items()]
        return ["", "config origins:", *render_rows(rows).splitlines()]
    path = run.path / OVERRIDES
    if not path.is_file():
        return ["", "config origins: not recorded"]
    try:
        overrides = to_plain(tree := read_yaml_file(path), str(path), tree) or {}
    except ConfigError:
        return ["", f"config origins: {path} is unreadable"]
    source = run.info.config_file or "the preset"
    if not overrides:
        return ["", f"config origins: every value from {source} (and the defaults); no --set or flags"]
    rows = [["KEY", "VALUE", "FROM"]] + [[k, inline_yaml(v), "--set / flag"] for k, v in overrides.items()]
    return ["", f"config origins: {source} (and the defaults), then:", *render_rows(rows).splitlines()]


def completion_lines(run: Run, step: int | None, limit: int) -> list[str]:
    records = run_metrics.read_completions(run.path)
    if not records:
        return ["", "completions: none recorded (logging.save_completions writes completions.jsonl)"]
    steps = sorted({r.get("step") for r in records if isinstance(r.get("step"), int)})
    shown = ", ".join(map(str, steps)) if len(steps) <= 8 else f"{steps[0]} ... {steps[-1]} ({len(steps)} steps)"
    shown = shown or "none"
    chosen = records if step is None else [r for r in records if r.get("step") == step]
    if not chosen:  # a --step at which nothing was recorded
        message = f"no completions were recorded at step {step}; recorded steps: {shown}."
        fix = f"pass one of them, e.g. --step {steps[-1]}" if steps else None
        raise ConfigError.of("--step", message, fix, str(run.path))
    lines = ["", f"completions: {len(chosen)} of {len(records)} (steps {shown})"]
    for record in chosen[-limit:] if step is None else chosen[:limit]:
        rewards = record.get("rewards")
        if isinstance(rewards, dict):
            rewards = ", ".join(f"{k} {fmt(v)}" for k, v in rewards.items())
        flags = [f"advantage {fmt(record.get('advantage'))}", f"length {fmt(record.get('length'))}"]
        flags += ["truncated"] * bool(record.get("truncated"))
        lines += [
            f"- step {record.get('step', '?')}: rewards {fmt(rewards)}; {', '.join(flags)}",
            f"    prompt:     {_cut(record.get('prompt', ''))}",
            f"    completion: {_cut(record.get('completion', ''))}",
        ]
    if len(chosen) > limit:
        lines.append(f"({len(chosen) - limit} more; --limit N shows more)")
    return lines


def show(run_dir, completions: bool = False, step: int | None = None, limit: int = 8) -> str:
    if limit < 1:
        raise ConfigError.of("--limit", f"must be 1 or more, got {limit}.", "e.g. --limit 8", "runs show")
    run = load_run(run_dir)
    lines = summary_lines(run) + origin_lines(run)
    if completions or step is not None:
        lines += completion_lines(run, step, limit)
    elif (count := len(run_metrics.read_completions(run.path))) > 0:
        lines += ["", f"completions: {count} recorded (show them with --completions, one step with --step N)"]
    return "\n".join(lines)
