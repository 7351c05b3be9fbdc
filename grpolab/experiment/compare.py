"""`grpolab compare`: the hyperparameters that differ between runs, their final and best
metrics, and one curve per run. Works from run directories alone."""

from __future__ import annotations

from pathlib import Path

from grpolab.config import ConfigError, Problem
from grpolab.config.errors import did_you_mean
from grpolab.config.keys import MISSING, flatten, same
from grpolab.config.yaml_io import inline_yaml
from grpolab.run.metrics import NOT_METRICS, lower_is_better, series

from .runs import Run
from .tables import fmt, pct, render_rows

__all__ = ["check_metric", "compare_rows", "compare_table", "differing_keys", "lower_is_better", "plot"]


def differing_keys(configs: list[dict]) -> list[str]:
    """Dotted keys whose values are not the same in every config (missing counts as different)."""
    flat = [flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [k for k in keys if any(not same(f.get(k, MISSING), flat[0].get(k, MISSING)) for f in flat[1:])]


def check_metric(runs: list[Run], metric: str) -> None:
    """A metric no run logged is a typo: say which ones exist."""
    known = {k for run in runs for rec in run.metrics() for k in rec} - set(NOT_METRICS)
    if known and metric not in known:
        raise ConfigError(
            Problem(
                "--metric",
                f"no run logged `{metric}`.{did_you_mean(metric, known)} Logged: {', '.join(sorted(known))}.",
                None,
                "compare",
            )
        )


def sort_runs(runs: list[Run], metric: str) -> list[Run]:
    """Best first by the metric's best value; runs without it last."""
    sign = 1 if lower_is_better(metric) else -1
    return sorted(runs, key=lambda r: (r.best(metric) is None, sign * (r.best(metric) or 0)))


def compare_rows(runs: list[Run], metric: str = "reward") -> tuple[list[str], list[list[str]]]:
    """(differing keys, table rows with a header row), sorted by `metric`."""
    configs = [run.config() for run in runs]
    keys = differing_keys(configs) if len(runs) > 1 else []
    by_run = {id(run): flatten(cfg) for run, cfg in zip(runs, configs)}
    show_eval = any(run.eval_accuracy()[1] is not None for run in runs)
    show_kl = metric != "kl" and any(run.final("kl") is not None for run in runs)
    header = ["RUN", *keys, f"FINAL {metric}", f"BEST {metric}"]
    header += ["EVAL ACC (before -> after)"] * show_eval + ["FINAL kl"] * show_kl + ["RUNTIME s", "STEPS", "STATUS"]
    rows = [header]
    for run in sort_runs(runs, metric):
        flat = by_run[id(run)]
        row = [
            run.name,
            *(inline_yaml(flat[k]) if k in flat else "-" for k in keys),
            fmt(run.final(metric)),
            fmt(run.best(metric)),
        ]
        if show_eval:
            before, after = run.eval_accuracy()
            row.append(f"{pct(before)} -> {pct(after)}")
        if show_kl:
            row.append(fmt(run.final("kl")))
        row += [fmt(round(run.runtime(), 1) if run.runtime() is not None else None), str(run.steps), run.status]
        rows.append(row)
    return keys, rows


def compare_table(runs: list[Run], metric: str = "reward") -> str:
    return render_rows(compare_rows(runs, metric)[1])


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to `window` points (per-step GRPO rewards are noisy)."""
    return [
        sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]


def plot(runs: list[Run], metrics: list[str], out, smooth: int = 1) -> dict[str, int]:
    """One panel per metric, one curve per run (over optimizer steps); with smooth > 1 the
    curve is a moving average over the raw points. Returns the number of curves in each panel.
    Agg canvas, no pyplot: no display and no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 3.2 * len(metrics)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics):
        for i, run in enumerate(runs):
            color = f"C{i % 10}"  # the same run has the same colour in every panel
            points = series(run.metrics(), metric)
            if not points:
                continue
            steps, values = zip(*points)
            if smooth > 1:
                ax.scatter(steps, values, s=6, alpha=0.3, color=color)
                ax.plot(steps, moving_average(list(values), smooth), color=color, label=run.name)
            else:
                ax.plot(steps, values, marker="o", markersize=3, color=color, label=run.name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step")
        ax.set_ylabel(metric + (f" (mean of {smooth} steps)" if smooth > 1 else ""))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.savefig(Path(out), dpi=110)
    return {metric: len(ax.lines) for ax, metric in zip(axes, metrics)}
