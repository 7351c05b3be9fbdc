"""How do step time and memory grow with num_generations and max_completion_length?

`grpolab train` on the ~14M-parameter random-init model of bench/overhead.py (the end token is
held back with min_new_tokens, so every completion is exactly max_completion_length tokens), 2
prompts per optimizer step:
  num_generations 4, 8, 16        at max_completion_length 32
  max_completion_length 16, 32, 64 at num_generations 8
Per point: the median of TRL's logged per-step `step_time` (the first step left out), the process's
peak RSS, the FLOP estimate of bench/common.py and that estimate / step time as a fraction of this
machine's measured matmul throughput in the run's precision. Each series gets a fitted exponent k (time ~ x^k).

    .venv/bin/python bench/growth.py [--steps 8]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    REPO,
    RESULTS,
    build_model,
    flops_per_step,
    grpolab_train,
    matmul_peak_flops,
    median,
    write_addition_jsonl,
    write_result,
)  # noqa: E402
from overhead import CONFIG, SIZES  # noqa: E402

PROMPTS_PER_STEP = 2
PROMPT_TOKENS = 6  # "12+34=": one token per character
SERIES = {
    "num_generations": {"values": [4, 8, 16], "fixed": {"max_completion_length": 32}},
    "max_completion_length": {"values": [16, 32, 64], "fixed": {"num_generations": 8}},
}


def run_point(
    model_dir: Path, data_file: Path, out: Path, G: int, L: int, steps: int, extra: tuple[str, ...] = ()
) -> dict:
    """One `grpolab train` run; `extra` are more --set overrides."""
    overrides = [
        *extra,
        f"model.name_or_path={model_dir}",
        f"data.dataset={data_file}",
        f"output_dir={out}",
        f"training.max_steps={steps}",
        f"training.per_device_train_batch_size={PROMPTS_PER_STEP * G}",
        f"grpo.num_generations={G}",
        f"generation.max_completion_length={L}",
        f'grpo.generation_kwargs={{"min_new_tokens": {L}}}',
    ]
    child, _, records, info = grpolab_train(CONFIG, overrides, out, completion_length=L)
    step_times = [r["step_time"] for r in records if "step_time" in r and r["step"] > 1]
    bf16 = info["trl_args"]["bf16"]
    return {
        "step_s": median(step_times),
        "peak_rss_mib": child["peak_rss_mib"],
        "steps_timed": len(step_times),
        "precision": "bfloat16" if bf16 else "float32",
    }


def exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def plot(series: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (name, s) in zip(axes, series.items()):
        xs = s["values"]
        ax.plot(
            xs,
            [p["step_s"] for p in s["points"]],
            "o-",
            color="tab:blue",
            label=f"s / step (~x^{s['time_exponent']:.2f})",
        )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(name + "  (" + ", ".join(f"{k} {v}" for k, v in s["fixed"].items()) + ")")
        ax.set_ylabel("seconds per optimizer step")
        ax.grid(alpha=0.3, which="both")
        mem = ax.twinx()
        mem.plot(xs, [p["peak_rss_mib"] for p in s["points"]], "s--", color="tab:orange", label="peak RSS (MiB)")
        mem.set_ylabel("peak RSS, MiB")
        lines = ax.get_legend_handles_labels(), mem.get_legend_handles_labels()
        ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], fontsize=8, loc="upper left")
    fig.suptitle("Growth: 14.5M-parameter model, 2 prompts per step, 2 CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=8, help="optimizer steps per point (default 8; the first is not timed)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="grpolab-bench-growth-"))
    try:
        data_file = write_addition_jsonl(work / "addition.jsonl")
        model_dir = work / "model"
        params = build_model(model_dir, **SIZES["14M"])
        peaks = {dtype: matmul_peak_flops(dtype=dtype) for dtype in ("float32", "bfloat16")}
        cache: dict[tuple[int, int], dict] = {}
        series = {}
        for name, spec in SERIES.items():
            points = []
            for value in spec["values"]:
                G = value if name == "num_generations" else spec["fixed"]["num_generations"]
                L = value if name == "max_completion_length" else spec["fixed"]["max_completion_length"]
                if (G, L) not in cache:  # the shared middle point runs once
                    out = work / f"G{G}-L{L}"
                    out.mkdir()
                    point = run_point(model_dir, data_file, out, G, L, args.steps)
                    shutil.rmtree(out)
                    flops = flops_per_step(
                        params, PROMPT_TOKENS, L, PROMPTS_PER_STEP * G, reference=False, old_logprobs=False
                    )
                    point.update(
                        num_generations=G,
                        max_completion_length=L,
                        completions=PROMPTS_PER_STEP * G,
                        flops=flops,
                        achieved_flops_per_s=flops["total"] / point["step_s"],
                        fraction_of_peak=flops["total"] / point["step_s"] / peaks[point["precision"]],
                    )
                    cache[(G, L)] = point
                    print(
                        f"  G {G:>2} L {L:>2}: {point['step_s'] * 1000:7.0f} ms/step, "
                        f"{point['peak_rss_mib']:6.0f} MiB, "
                        f"{point['achieved_flops_per_s'] / 1e9:5.1f} GFLOP/s = "
                        f"{point['fraction_of_peak']:.1%} of the {point['precision']} peak",
                        flush=True,
                    )
                points.append(cache[(G, L)])
            series[name] = {
                **spec,
                "points": points,
                "time_exponent": exponent(spec["values"], [p["step_s"] for p in points]),
                "memory_exponent": exponent(spec["values"], [p["peak_rss_mib"] for p in points]),
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(series, RESULTS / "growth.png")
    path = write_result(
        "growth",
        {
            "parameters": params,
            "prompts_per_step": PROMPTS_PER_STEP,
            "steps": args.steps,
            "matmul_peak_flops_per_s": peaks,
            "series": series,
            "plot": "bench/results/growth.png",
        },
    )
    print(
        f"\nmachine matmul peak: {peaks['float32'] / 1e9:.0f} GFLOP/s fp32, "
        f"{peaks['bfloat16'] / 1e9:.0f} GFLOP/s bf16 (runs in {points[0]['precision']})"
    )
    for name, s in series.items():
        print(f"{name}: time ~ x^{s['time_exponent']:.2f}, peak RSS ~ x^{s['memory_exponent']:.2f}")
    print(f"wrote {path.relative_to(REPO)} and bench/results/growth.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
