"""`make bench`: every benchmark, one after the other (never two at once: they time the CPU),
then one table on stdout and in bench/results/summary.md.

    .venv/bin/python bench/run_all.py [--only overhead growth ...]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, REPO, RESULTS, child_env, machine  # noqa: E402

BENCHMARKS = {  # name: the script and its arguments
    "cli_latency": ["bench/cli_latency.py"],
    "overhead": ["bench/overhead.py"],
    "growth": ["bench/growth.py"],
    "speed_choices": ["bench/speed_choices.py"],
    "profile_demo": ["bench/profile_demo.py"],
    "time_to_accuracy": ["bench/time_to_accuracy.py"],
    "memory_estimate": ["bench/memory_estimate.py"],
    "guard": ["bench/guard.py"],
}


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def summary_rows() -> list[tuple[str, str, str, str]]:
    """(benchmark, measured, target, met?) for each result file present."""
    rows = []
    cli = load("cli_latency")
    if cli:
        med = cli["median_seconds"]
        rows.append(("`grpolab config validate`", f"{med['validate'] * 1000:.0f} ms", "", ""))
        if "explain" in med:
            rows.append(("`grpolab config explain`", f"{med['explain'] * 1000:.0f} ms", "", ""))
        if "python_startup" in med:
            rows.append(
                (
                    "`python -c pass` (the interpreter alone: the floor)",
                    f"{med['python_startup'] * 1000:.0f} ms",
                    "",
                    "",
                )
            )
        rows.append(
            (
                '`python -c "import trl"` (lazy) / validate',
                f"{cli['import_trl_over_validate']:.2f}x",
                ">= 10x",
                _met(cli["import_trl_over_validate"] >= 10),
            )
        )
        rows.append(
            (
                "`from trl import GRPOConfig` / validate",
                f"{cli['import_trl_grpoconfig_over_validate']:.1f}x",
                ">= 10x",
                _met(cli["import_trl_grpoconfig_over_validate"] >= 10),
            )
        )
    over = load("overhead")
    if over:
        for size, r in over["sizes"].items():
            m = r["median"]
            label = f"{size} model ({r['parameters'] / 1e6:.2f}M)"
            rows.append(
                (
                    f"overhead, {label}: step time grpolab / plain TRL",
                    f"{r['ratio_step_time']:.3f} ({m['grpolab']['step_s'] * 1000:.1f} vs "
                    f"{m['plain_trl']['step_s'] * 1000:.1f} ms; median of paired ratios "
                    f"{r.get('ratio_step_time_paired', float('nan')):.3f})",
                    "<= 1.03",
                    _met(r["ratio_step_time"] <= 1.03),
                )
            )
            rows.append(
                (
                    f"overhead, {label}: peak RSS grpolab / plain TRL",
                    f"{r['ratio_peak_rss']:.3f} ({m['grpolab']['peak_rss_mib']:.0f} vs "
                    f"{m['plain_trl']['peak_rss_mib']:.0f} MiB)",
                    "<= 1.05",
                    _met(r["ratio_peak_rss"] <= 1.05),
                )
            )
            rows.append(
                (
                    f"overhead, {label}: FLOP estimate / step time",
                    f"{r['fraction_of_peak']['grpolab']:.1%} of the measured "
                    f"{r.get('precision', 'float32')} matmul peak",
                    "",
                    "",
                )
            )
    tta = load("time_to_accuracy")
    if tta:
        med, budget, target = tta["median"], tta["budget_s"], tta["target_accuracy"]
        fmt = lambda t: f"{t:.1f} s" if t is not None else f"> {budget:g} s"  # noqa: E731
        speedup = tta["speedup_time_to_target"]
        bound = ">= " if speedup is not None and tta["speedup_kind"].startswith("lower") else ""
        rows.append(
            (
                f"demo task: training time to {target:.0%} held-out, grpolab preset vs TRL defaults",
                f"{fmt(med['grpolab']['time_to_target_s'])} vs "
                f"{fmt(med['trl_defaults']['time_to_target_s'])}: {bound}{speedup:.1f}x"
                if speedup
                else "not reached",
                ">= 2x",
                _met(speedup is not None and speedup >= 2),
            )
        )
        if "tokens_per_s" in med["grpolab"]:
            rows.append(
                (
                    "demo task: tokens per training second, FLOP estimate / peak",
                    f"{med['grpolab']['tokens_per_s']:.0f} ({med['grpolab']['fraction_of_peak']:.2%}) "
                    f"vs {med['trl_defaults']['tokens_per_s']:.0f} "
                    f"({med['trl_defaults']['fraction_of_peak']:.2%})",
                    "",
                    "",
                )
            )
        rows.append(
            (
                f"demo task: held-out accuracy after {budget:g} s",
                f"{med['grpolab']['accuracy_at_budget']:.1%} vs "
                f"{med['trl_defaults']['accuracy_at_budget']:.1%} (from "
                f"{med['grpolab']['accuracy_before']:.1%})",
                "",
                "",
            )
        )
    growth = load("growth")
    if growth:
        for name, s in growth["series"].items():
            pts = s["points"]
            rows.append(
                (
                    f"growth with {name} {s['values'][0]} -> {s['values'][-1]}",
                    f"step time x{pts[-1]['step_s'] / pts[0]['step_s']:.2f} "
                    f"(~x^{s['time_exponent']:.2f}), peak RSS "
                    f"+{pts[-1]['peak_rss_mib'] - pts[0]['peak_rss_mib']:.0f} MiB, "
                    f"{min(p['fraction_of_peak'] for p in pts):.0%}-{max(p['fraction_of_peak'] for p in pts):.0%}"
                    f" of the {pts[0].get('precision', 'float32')} matmul peak",
                    "",
                    "",
                )
            )
    choices = load("speed_choices")
    if choices:
        names = list(next(iter(choices["sizes"].values()))["choices"])
        for name in names[1:]:
            per_size = ", ".join(
                f"{size} {r['choices'][name]['step_time_vs_preset']:.2f}x" for size, r in choices["sizes"].items()
            )
            rows.append(
                (
                    f"speed choice: {name} (step time vs the local preset on CPU)",
                    per_size,
                    "> 1 (preset faster)",
                    _met(all(r["choices"][name]["step_time_vs_preset"] > 1 for r in choices["sizes"].values())),
                )
            )
    profile = load("profile_demo")
    if profile:
        loop = profile["share_of_training_loop"]
        top = ", ".join(f"{k} {v:.0%}" for k, v in sorted(loop.items(), key=lambda kv: -kv[1])[:3])
        rows.append(("demo profile: training loop", top, "", ""))
        rows.append(
            (
                "demo profile: grpolab's own code in the loop",
                f"{profile['grpolab_code_share_of_training_loop']:.1%} of samples",
                "",
                "",
            )
        )
    mem = load("memory_estimate")
    if mem:
        rows.append(
            (
                f"memory plan: activations + logits estimate vs measured peak, {len(mem['points'])} points (CPU)",
                f"max |error| {mem['max_abs_error']:.1%}, mean {mem['mean_abs_error']:.1%}",
                "<= 25% at every point",
                _met(mem["within_target"]),
            )
        )
    rows += guard_rows(load("guard"))
    return rows


def guard_rows(guard: dict | None) -> list[tuple[str, str, str, str]]:
    """The live guard's engineered runs and the demo over seeds (bench/guard.py)."""
    if not guard:
        return []
    c, h, k, t = guard["constant_reward"], guard["huge_lr"], guard["clipping"], guard["targets"]
    rows = [
        (
            f"guard: constant reward, {c['planned_steps']} planned steps",
            f"stopped at step {c['stopped_at_step']}, {c['time_saved']:.1%} of the forecast time saved",
            ">= 80% saved",
            _met(t["constant_reward_saves_80pct"]),
        ),
        (
            "guard: learning rate 1e3",
            f"{h['stopped_kind']} stop at step {h['stopped_at_step']}, {h['non_finite_losses_logged']} non-finite "
            f"losses, checkpoint loads: {h['checkpoint_loads_finite']}",
            "stop before NaN, loadable checkpoint",
            _met(t["huge_lr_stops_before_nan_with_loadable_checkpoint"]),
        ),
        (
            "guard: clipping length limit",
            f"warned at logged step {k['warned_at_logged_step']} (clipped ratio {k['mean_clipped_ratio']:.2f})",
            "<= 10 logged steps",
            _met(t["clipping_warns_within_10_logged_steps"]),
        ),
    ]
    demo = [d for d in guard.get("demo", []) if d["guard"]]
    if demo:
        rows.append(
            (
                f"guard: demo preset, {len(demo)} seeds",
                ", ".join(f"seed {d['seed']}: {d['status']}, {len(d['findings'])} findings" for d in demo),
                "no stop, no warning",
                _met(t["demo_quiet"]),
            )
        )
        if "demo_accuracy_unchanged" in t:
            off = next(d for d in guard["demo"] if not d["guard"])
            on = next(d for d in demo if d["seed"] == off["seed"])
            rows.append(
                (
                    f"guard: demo held-out accuracy, seed {off['seed']}, guard on / off",
                    f"{on['accuracy_after']:.1%} / {off['accuracy_after']:.1%}",
                    "unchanged",
                    _met(t["demo_accuracy_unchanged"]),
                )
            )
        # The newest forecast-only measurement (bench/guard.py --forecast-only) where there is one.
        latest = guard.get("forecast", {"seeds": demo, "measured": guard["demo_measured"]})
        errors = ", ".join(f"{d['forecast_error']:+.1%}" for d in latest["seeds"])
        what = f"guard: demo forecast after step 10 vs actual ({latest['measured']})"
        rows.append((what, errors, "within 15%", _met(t["forecast_within_15pct"])))
        shares = ", ".join(f"{d['guard_share']:.2%}" for d in demo)
        rows.append(("guard: its own time / training time (demo)", shares, "< 1%", _met(t["guard_under_1pct"])))
    return rows


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def write_summary(rows, seconds: dict) -> Path:
    m = machine()
    dates = {name: (load(name) or {}).get("measured") for name in BENCHMARKS}  # a rerun with --only keeps the others
    lines = [
        "# grpolab benchmarks",
        "",
        f"Measured on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, no GPU; "
        f"Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, trl "
        f"{m['trl']}. Medians; raw samples in the JSON files. Measured on: "
        + ", ".join(f"{name} {day}" for name, day in dates.items() if day)
        + ".",
        "",
        "| benchmark | measured | target | met |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        "Plots: `time_to_accuracy.png`, `growth.png`."
        + (
            " Run time of each benchmark: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + "."
            if seconds
            else ""
        ),
        "",
    ]
    path = RESULTS / "summary.md"
    path.write_text("\n".join(lines))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", nargs="+", choices=list(BENCHMARKS), help="run only these (the table still shows every result file)"
    )
    args = parser.parse_args()

    seconds = {}
    for name, script in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([PYTHON, *script], cwd=REPO, env=child_env())
        seconds[name] = time.perf_counter() - start
        if proc.returncode != 0:
            print(f"{name} failed (exit {proc.returncode})", file=sys.stderr)
            return 1

    rows = summary_rows()
    path = write_summary(rows, seconds)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print("\n" + "  ".join(h.ljust(w) for h, w in zip(("benchmark", "measured", "target", "met"), widths)))
    for row in rows:
        print("  ".join(cell.replace("**", "").ljust(w) for cell, w in zip(row, widths)))
    total = sum(seconds.values())
    print(
        f"\nall benchmarks: {math.floor(total / 60)} min {total % 60:.0f} s; wrote "
        f"{path.relative_to(REPO)} and bench/results/*.json, *.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
