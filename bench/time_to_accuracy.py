"""Does grpolab's demo preset reach a good model sooner than TRL's defaults?

Both arms train the embedded demo model on the built-in addition task with the same reward,
seed and held-out prompts (500, greedy), scored every few steps by the same callback
(grpolab.train.callbacks.HeldOutAccuracyCallback), which also keeps the clock: training seconds
since the first step, not counting the scoring.

  grpolab      `grpolab train --config configs/grpo_demo.yaml` (tracking off; TRL's default
               tracks nothing either)
  TRL defaults bench/trl_defaults_grpo.py: GRPOConfig() as TRL ships it (learning_rate 1e-6,
               batch 8, gradient checkpointing, bf16, ...) with only use_cpu and a
               max_completion_length that fits the model set

Reported per arm, median over seeds: training seconds until held-out accuracy first reaches
`--target`, and held-out accuracy after `--budget` training seconds. An arm that never reaches
the target within the budget counts as infinitely slow for that seed.

    .venv/bin/python bench/time_to_accuracy.py [--seeds 0 1 2] [--budget 60] [--target 0.5]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, REPO, RESULTS, grpolab_train, matmul_peak_flops, median, run_child, write_result  # noqa: E402

DEMO = REPO / "configs" / "grpo_demo.yaml"


def run_grpolab(seed: int, eval_every: int, out: Path) -> dict:
    overrides = [
        f"training.seed={seed}",
        f"data.eval_every_steps={eval_every}",
        f"output_dir={out}",
        "logging.report_to=[none]",
    ]
    child, run_dir, records, info = grpolab_train(DEMO, overrides, out)
    curve = [
        {"step": r["step"], "train_seconds": r["eval/train_seconds"], "accuracy": r["eval/accuracy"]}
        for r in records
        if "eval/accuracy" in r
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    tokens = [(r["step"], r["num_tokens"]) for r in records if "num_tokens" in r][-1]
    return {
        "accuracy_before": summary["eval"]["accuracy_before"],
        "curve": curve,
        "wall_s": child["wall_s"],
        "steps": summary["global_step"],
        "num_tokens": tokens,
        "bf16": info["trl_args"]["bf16"],
    }


def run_trl_defaults(seed: int, eval_every: int, budget: float, out: Path) -> dict:
    cmd = [
        PYTHON,
        str(REPO / "bench" / "trl_defaults_grpo.py"),
        "--seed",
        str(seed),
        "--budget",
        str(budget),
        "--eval-every",
        str(eval_every),
        "--out",
        str(out),
    ]
    child = run_child(cmd)
    line = [ln for ln in child["output"].splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line.removeprefix("RESULT "))
    curve = [
        {"step": p["step"], "train_seconds": p["eval/train_seconds"], "accuracy": p["eval/accuracy"]}
        for p in result["curve"]
    ]
    return {
        "accuracy_before": result["accuracy_before"],
        "curve": curve,
        "wall_s": child["wall_s"],
        "steps": result["global_step"],
        "trl_config": result["config"],
        "num_tokens": result["num_tokens"],
        "bf16": result["config"]["bf16"],
    }


def throughput(run: dict, params: int, peaks: dict) -> dict:
    """Tokens (prompt + completion) per training second, and the FLOP estimate of
    bench/common.py (2N generated/prefilled + 6N trained per token; beta 0 and on-policy in both
    arms, so no reference or old-log-prob pass) as a fraction of the matmul peak of the run's precision."""
    step, tokens = run["num_tokens"]
    seconds_per_step = run["curve"][-1]["train_seconds"] / run["curve"][-1]["step"]
    tokens_per_s = tokens / step / seconds_per_step
    peak = peaks["bfloat16" if run["bf16"] else "float32"]
    return {"tokens_per_s": tokens_per_s, "fraction_of_peak": 8 * params * tokens_per_s / peak}


def time_to(curve: list[dict], target: float, budget: float) -> float:
    """Training seconds at the first scoring that reaches `target` within the budget, else inf."""
    for point in curve:
        if point["train_seconds"] > budget:
            break
        if point["accuracy"] >= target:
            return point["train_seconds"]
    return math.inf


def accuracy_at(curve: list[dict], before: float, budget: float) -> float:
    """Held-out accuracy at the last scoring within the budget (a run that ended early keeps its last)."""
    within = [p["accuracy"] for p in curve if p["train_seconds"] <= budget]
    return within[-1] if within else before


def plot(runs: dict, target: float, budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"grpolab": "tab:blue", "trl_defaults": "tab:gray"}
    labels = {"grpolab": "grpolab demo preset", "trl_defaults": "TRL GRPOConfig defaults"}
    for arm, seeds in runs.items():
        for i, run in enumerate(seeds.values()):
            xs = [0.0] + [p["train_seconds"] for p in run["curve"]]
            ys = [run["accuracy_before"]] + [p["accuracy"] for p in run["curve"]]
            ax.plot(
                xs, [100 * y for y in ys], color=colors[arm], alpha=0.8, lw=1.2, label=labels[arm] if i == 0 else None
            )
    ax.axhline(100 * target, color="tab:red", ls="--", lw=1, label=f"target {target:.0%}")
    ax.axvline(budget, color="black", ls=":", lw=1, label=f"budget {budget:g} s")
    ax.set_xlabel("training seconds (2 CPU cores, scoring excluded)")
    ax.set_ylabel("held-out accuracy, % (500 prompts, greedy)")
    ax.set_title("Demo task: time to accuracy, one line per seed")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per run (default 60)")
    parser.add_argument("--target", type=float, default=0.5, help="held-out accuracy to reach (default 0.5)")
    parser.add_argument(
        "--eval-every", type=int, default=20, help="optimizer steps between scorings, grpolab arm (default 20)"
    )
    parser.add_argument(
        "--eval-every-trl",
        type=int,
        default=40,
        help="the same for the TRL arm, whose steps are ~2x shorter (default 40)",
    )
    args = parser.parse_args()

    from transformers import AutoConfig, AutoModelForCausalLM

    from grpolab.demo.tiny_model import demo_model_path

    model_dir = demo_model_path()  # built once here, so no arm's first run pays for it
    params = sum(
        p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).parameters()
    )
    peaks = {dtype: matmul_peak_flops(dtype=dtype) for dtype in ("float32", "bfloat16")}
    work = Path(tempfile.mkdtemp(prefix="grpolab-bench-tta-"))
    runs: dict[str, dict[int, dict]] = {"grpolab": {}, "trl_defaults": {}}
    try:
        for i, seed in enumerate(args.seeds):
            order = ["grpolab", "trl_defaults"] if i % 2 == 0 else ["trl_defaults", "grpolab"]
            for arm in order:
                out = work / f"{arm}-{seed}"
                out.mkdir()
                run = (
                    run_grpolab(seed, args.eval_every, out)
                    if arm == "grpolab"
                    else run_trl_defaults(seed, args.eval_every_trl, args.budget, out)
                )
                run["time_to_target_s"] = time_to(run["curve"], args.target, args.budget)
                run["accuracy_at_budget"] = accuracy_at(run["curve"], run["accuracy_before"], args.budget)
                run.update(throughput(run, params, peaks))
                runs[arm][seed] = run
                reached = (
                    f"{run['time_to_target_s']:.1f} s"
                    if math.isfinite(run["time_to_target_s"])
                    else f"not within {args.budget:g} s"
                )
                print(
                    f"  seed {seed} {arm:<13} before {run['accuracy_before']:.1%}, at budget "
                    f"{run['accuracy_at_budget']:.1%}, "
                    f"target {args.target:.0%}: {reached} ({run['steps']} steps, {run['wall_s']:.0f} s wall)",
                    flush=True,
                )
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {
        arm: {
            "time_to_target_s": median([r["time_to_target_s"] for r in seeds.values()]),
            "accuracy_at_budget": median([r["accuracy_at_budget"] for r in seeds.values()]),
            "accuracy_before": median([r["accuracy_before"] for r in seeds.values()]),
            "tokens_per_s": median([r["tokens_per_s"] for r in seeds.values()]),
            "fraction_of_peak": median([r["fraction_of_peak"] for r in seeds.values()]),
        }
        for arm, seeds in runs.items()
    }
    fast, slow = med["grpolab"]["time_to_target_s"], med["trl_defaults"]["time_to_target_s"]
    if math.isfinite(fast) and math.isfinite(slow):
        speedup, bound = slow / fast, "exact"
    elif math.isfinite(fast):  # the baseline never got there: the speed-up is at least budget / fast
        speedup, bound = args.budget / fast, "lower bound (TRL defaults did not reach the target within the budget)"
    else:
        speedup, bound = None, "grpolab did not reach the target within the budget"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(runs, args.target, args.budget, RESULTS / "time_to_accuracy.png")
    as_json = lambda v: None if isinstance(v, float) and math.isinf(v) else v  # noqa: E731
    for seeds in runs.values():
        for run in seeds.values():
            run["time_to_target_s"] = as_json(run["time_to_target_s"])
    result = {
        "parameters": params,
        "matmul_peak_flops_per_s": peaks,
        "seeds": args.seeds,
        "budget_s": args.budget,
        "target_accuracy": args.target,
        "held_out_prompts": 500,
        "arms": {
            "grpolab": f"grpolab train --config {DEMO.relative_to(REPO)} (report_to none)",
            "trl_defaults": "bench/trl_defaults_grpo.py",
        },
        "median": {arm: {k: as_json(v) for k, v in m.items()} for arm, m in med.items()},
        "speedup_time_to_target": speedup,
        "speedup_kind": bound,
        "target_speedup": 2.0,
        "runs": {arm: {str(s): r for s, r in seeds.items()} for arm, seeds in runs.items()},
        "plot": "bench/results/time_to_accuracy.png",
    }
    path = write_result("time_to_accuracy", result)
    print(
        f"\n{'arm':<14} {'time to ' + format(args.target, '.0%'):>12} "
        f"{'acc @ ' + format(args.budget, 'g') + ' s':>10} {'tokens/s':>9} {'of peak':>8} "
        f" (median of {len(args.seeds)} seeds)"
    )
    for arm, m in med.items():
        t = m["time_to_target_s"]
        print(
            f"{arm:<14} {(f'{t:.1f} s' if math.isfinite(t) else f'>{args.budget:g} s'):>12} "
            f"{m['accuracy_at_budget']:>10.1%} {m['tokens_per_s']:>9.0f} "
            f"{m['fraction_of_peak']:>8.2%}"
        )
    print(f"speed-up to target: {'n/a' if speedup is None else f'{speedup:.1f}x'} ({bound})")
    print(f"wrote {path.relative_to(REPO)} and bench/results/time_to_accuracy.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
