"""`grpolab compare`: the hyperparameters that differ between runs, their final and best metrics,
and one curve per run, from run directories alone. Runs that differ only in training.seed form a
seed group: shown as its mean ± 95% CI (a band in the plot), tested against the best group."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from grpolab.config import ConfigError
from grpolab.config.errors import CANNOT_WRITE, FILE_EXISTS, did_you_mean
from grpolab.config.keys import MISSING, flatten, same
from grpolab.config.yaml_io import folder_named, inline_yaml
from grpolab.run.metrics import NOT_METRICS, lower_is_better, series

from .runs import Run, find_runs
from .stats import LEVEL, NOISE_TEST, Estimate, mean_ci, welch
from .tables import fmt, pct, render_rows

SEED_KEY = "training.seed"
Table = tuple[list[str], list[list[str]]]  # (the differing config keys, rows with a header row)


def setting_key(config: dict) -> str:
    """What a run's config says apart from its seed: runs with the same key form one seed group."""
    return repr(sorted((k, repr(v)) for k, v in flatten(config).items() if k != SEED_KEY))


@dataclass
class SeedGroup:
    """Runs of one setting that differ only in training.seed (one run: a group of one)."""

    runs: list[Run]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list:
        return [flatten(r.config()).get(SEED_KEY, "-") for r in self.runs]

    @property
    def label(self) -> str:
        """The runs' common name: sweep run names without their `_seedN` part and timestamp."""
        names = [re.sub(r"_\d{8}-\d{6}(-\d+)?$", "", re.sub(r"_seed\d+", "", r.name)) for r in self.runs]
        return names[0] if len(set(names)) == 1 else f"{self.runs[0].name} (+{self.n - 1})"

    def values(self, metric: str, which: str = "final") -> list[float]:
        got = [r.final(metric) if which == "final" else r.best(metric) for r in self.runs]
        return [v for v in got if isinstance(v, (int, float)) and not isinstance(v, bool)]

    def estimate(self, metric: str, which: str = "final") -> Estimate | None:
        return mean_ci(values) if (values := self.values(metric, which)) else None

    def text(self, metric: str, which: str = "final") -> str:
        """The estimate as 'mean ± half', or '-' when no run has the metric."""
        return est.text() if (est := self.estimate(metric, which)) else "-"


def seed_groups(runs: list[Run]) -> list[SeedGroup]:
    """Group runs by all but training.seed, in first-seen order; a run without a config stays alone."""
    groups: dict[str, SeedGroup] = {}
    for run in runs:
        key = setting_key(config) if (config := run.config()) else f"alone:{run.path}"
        groups.setdefault(key, SeedGroup([])).runs.append(run)
    return list(groups.values())


def seed_siblings(run: Run) -> SeedGroup:
    """The run and the runs beside it (same output_dir) that differ from it only in training.seed."""
    if not (config := run.config()):
        return SeedGroup([run])
    key = setting_key(config)
    others = [
        r for r in find_runs([run.path.parent]) if r.path != run.path and r.config() and setting_key(r.config()) == key
    ]
    return SeedGroup([run, *others])


def noise_verdict(group: SeedGroup, best: SeedGroup, metric: str) -> str:
    """'best', 'within noise (p=0.41)', 'differs (p=0.003)', or why it cannot be said."""
    if group is best:
        return "best"
    test = welch(group.values(metric), best.values(metric))
    if test is None:
        return "- (n < 2)"
    return f"{'within noise' if test.within_noise else 'differs'} (p={test.p:.2g})"


def group_rows(groups: list[SeedGroup], metric: str = "reward", also: tuple[str, ...] = ()) -> Table:
    """(differing keys, rows): a row per seed group, best first, with mean ± CI, n and the noise verdict."""
    ordered = _best_first(groups, metric, lambda g: est.mean if (est := g.estimate(metric)) else None)
    configs = [g.runs[0].config() for g in ordered]
    keys = [k for k in differing_keys(configs) if k != SEED_KEY] if len(ordered) > 1 else []
    ci = f"mean ± {LEVEL:.0%} CI"
    also = tuple(m for m in also if m != metric)
    header = ["GROUP", *keys, "n", "SEEDS", f"FINAL {metric} ({ci})", f"BEST {metric} ({ci})", "VS BEST"]
    header += [f"FINAL {m} ({ci})" for m in also] + ["STATUS"]
    rows = [header]
    for group, config in zip(ordered, configs):
        flat = flatten(config)
        statuses = [r.status_shown for r in group.runs]
        row = [
            group.label,
            *(inline_yaml(flat[k]) if k in flat else "-" for k in keys),
            str(group.n),
            ",".join(map(str, group.seeds)),
            group.text(metric),
            group.text(metric, "best"),
            noise_verdict(group, ordered[0], metric),
            *(group.text(m) for m in also),
            ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses)),
        ]
        rows.append(row)
    return keys, rows


def differing_keys(configs: list[dict]) -> list[str]:
    """Dotted keys whose values are not the same in every config (missing counts as different)."""
    flat = [flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [k for k in keys if any(not same(f.get(k, MISSING), flat[0].get(k, MISSING)) for f in flat[1:])]


def check_metric(runs: list[Run], metric: str) -> None:
    """A metric no run logged is a typo: say which ones exist."""
    known = {k for run in runs for rec in run.metrics() for k in rec} - set(NOT_METRICS)
    if known and metric not in known:
        message = f"no run logged `{metric}`.{did_you_mean(metric, known)} Logged: {', '.join(sorted(known))}."
        raise ConfigError.of("--metric", message, None, "compare")


def _best_first(items: list, metric: str, value) -> list:
    """Best first by `value` (a run's best, a group's mean final); those without it last."""
    sign = 1 if lower_is_better(metric) else -1
    return sorted(items, key=lambda item: ((v := value(item)) is None, sign * (v or 0)))


def compare_rows(runs: list[Run], metric: str = "reward") -> Table:
    """(differing keys, table rows with a header row), sorted by `metric`."""
    configs = [run.config() for run in runs]
    keys = differing_keys(configs) if len(runs) > 1 else []
    by_run = {id(run): flatten(cfg) for run, cfg in zip(runs, configs)}
    show_eval = any(run.eval_accuracy()[1] is not None for run in runs)
    show_kl = metric != "kl" and any(run.final("kl") is not None for run in runs)
    header = ["RUN", *keys, f"FINAL {metric}", f"BEST {metric}"]
    header += ["EVAL ACC (before -> after)"] * show_eval + ["FINAL kl"] * show_kl + ["RUNTIME s", "STEPS", "STATUS"]
    rows = [header]
    for run in _best_first(runs, metric, lambda r: r.best(metric)):
        flat = by_run[id(run)]
        row = [
            run.name,
            *(inline_yaml(flat[k]) if k in flat else "-" for k in keys),
            fmt(run.final(metric)),
            fmt(run.best(metric)),
        ]
        before, after = run.eval_accuracy()
        row += [f"{pct(before)} -> {pct(after)}"] * show_eval + [fmt(run.final("kl"))] * show_kl
        row += [fmt(round(run.runtime(), 1) if run.runtime() is not None else None), str(run.steps), run.status_shown]
        rows.append(row)
    return keys, rows


def compare_table(runs: list[Run], metric: str = "reward", also: tuple[str, ...] = ()) -> str:
    """The per-run table; with seed groups, the group table above it."""
    per_run = render_rows(compare_rows(runs, metric)[1])
    groups = seed_groups(runs)
    if all(g.n < 2 for g in groups):
        return per_run
    legend = (
        f"seed groups: runs whose configs differ only in {SEED_KEY}; mean ± {LEVEL:.0%} confidence interval "
        f"(t-distribution) over the seeds;\n"
        f"VS BEST: within noise = {NOISE_TEST} against the best group on the final {metric} (the difference "
        "can be seed noise); differs = p < 0.05"
    )
    return f"{render_rows(group_rows(groups, metric, also)[1])}\n\n{legend}\n\nruns:\n{per_run}"


def _curve(run: Run, metric: str, smooth: int) -> tuple[list, list]:
    """(steps, values); smooth > 1: the trailing mean over up to `smooth` points (per-step GRPO rewards are noisy)."""
    points = series(run.metrics(), metric)
    steps, values = [p[0] for p in points], [p[1] for p in points]
    if smooth > 1:
        values = [sum(w := values[max(0, i - smooth + 1) : i + 1]) / len(w) for i in range(len(values))]
    return steps, values


def draw(runs: list[Run], metrics: list[str], smooth: int = 1):
    """One panel per metric, a curve per run or per seed group (with its CI band); smooth > 1 draws
    moving averages over faint raw points. Agg canvas, no pyplot: no display and no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    groups = seed_groups(runs)
    fig = Figure(figsize=(7, 3.2 * len(metrics)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics):
        for i, group in enumerate(groups):
            color = f"C{i % 10}"  # the same run or group has the same colour in every panel
            if group.n == 1:
                run = group.runs[0]
                steps, values = _curve(run, metric, smooth)
                if not steps:
                    continue
                if smooth > 1:
                    ax.scatter(*zip(*series(run.metrics(), metric)), s=6, alpha=0.3, color=color)
                markers = {} if smooth > 1 else {"marker": "o", "markersize": 3}
                ax.plot(steps, values, color=color, label=run.name, **markers)
                continue
            at: dict = {}  # step -> the group's values there
            for run in group.runs:
                for step, value in zip(*_curve(run, metric, smooth)):
                    at.setdefault(step, []).append(value)
            if not at:
                continue
            estimates = {step: mean_ci(at[step]) for step in sorted(at)}
            label = f"{group.label} (mean of {group.n} seeds, {LEVEL:.0%} CI)"
            ax.plot(list(estimates), [e.mean for e in estimates.values()], color=color, label=label)
            if banded := [(step, e.low, e.high) for step, e in estimates.items() if e.low is not None]:  # n >= 2
                ax.fill_between(*zip(*banded), color=color, alpha=0.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step")
        ax.set_ylabel(metric + (f" (mean of {smooth} steps)" if smooth > 1 else ""))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    return fig


def plot(runs: list[Run], metrics: list[str], out, smooth: int = 1, *, overwrite: bool = True) -> dict[str, int]:
    """Draw and save the figure (in memory first: no partial file); the number of curves per panel."""
    out = plot_path(out)
    fig = draw(runs, metrics, smooth)
    kind = out.suffix[1:].lower()
    formats = fig.canvas.get_supported_filetypes()
    if kind not in formats:
        message = f"`{out.suffix or out.name}` is not an image type; allowed: {', '.join(formats)}."
        fix = f"end the name in .png (e.g. {out.with_suffix('.png').name})"
        raise ConfigError.of("--out", message, fix, str(out))
    image = io.BytesIO()
    fig.savefig(image, format=kind, dpi=110)
    write_bytes(out, image.getvalue(), overwrite=overwrite)
    return {metric: len(ax.lines) for ax, metric in zip(fig.axes, metrics)}


def plot_path(out) -> Path:
    """`--out` as the image file to write; empty, a folder or a name ending in `/` is refused."""
    text = str(out)
    path = Path(text).expanduser()
    if text.strip() and folder_named(text) is None and not path.is_dir():
        return path
    what = "is a folder" if text.strip() else "is empty: a file name is needed"
    fix = f"give an image file, e.g. --out {path / 'compare.png' if text.strip() else 'compare.png'}"
    raise ConfigError.of("--out", f"{what}.", fix, repr(text) if not text.strip() else text, CANNOT_WRITE)


def write_bytes(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write `data` to `path` (folders made); a refusal is a one-line error naming the path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb" if overwrite else "xb") as handle:  # x: never replaces a file
            handle.write(data)
    except FileExistsError:
        fix = "choose a new file name, or pass --force"
        raise ConfigError.of("--out", "exists; refusing to overwrite it.", fix, str(path), FILE_EXISTS) from None
    except OSError as exc:
        message = f"cannot be written: {exc.strerror or exc}."
        raise ConfigError.of("--out", message, "choose a writable place", str(path), CANNOT_WRITE) from None
