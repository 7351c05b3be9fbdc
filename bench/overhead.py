"""Does grpolab cost anything next to a hand-written TRL script?

The same GRPO run (same local model, data, reward, seed and every GRPOConfig value) goes once
through `grpolab train --config bench/configs/overhead.yaml` and once through
bench/plain_trl_grpo.py, which gets the GRPOConfig keyword arguments grpolab used (its run_info.json
`trl_args`; every grpolab run is checked to have used the same). The two alternate (the order
flips every repetition, grpolab first); each is a fresh process. Reported per model size:
median time per optimizer step (the Trainer's own train_runtime / steps), median process wall
time, median peak RSS, and the grpolab / plain ratios (for step time also the median of each
back-to-back pair's ratio, steadier when the machine drifts); and the FLOP estimate per step (see
bench/common.py) over the step time, as a fraction of this machine's measured matmul peak in the
precision the run used (bf16 autocast where the CPU has native bf16, else fp32).

Two random-init GPT-2 models with the demo's character tokenizer: a tiny one where framework
overhead dominates, and one of ~14M parameters where compute does.

    .venv/bin/python bench/overhead.py [--reps 5] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    PYTHON,
    REPO,
    build_model,
    flops_per_step,
    grpolab_train,
    matmul_peak_flops,
    median,
    run_child,
    write_addition_jsonl,
    write_result,
)  # noqa: E402

CONFIG = REPO / "bench" / "configs" / "overhead.yaml"
SIZES = {  # GPT-2 shapes: tiny (overhead-bound) and ~14M parameters (compute-bound)
    "tiny": dict(n_layer=2, n_embd=64, n_head=4),
    "14M": dict(n_layer=6, n_embd=448, n_head=7),
}


def grpolab_overrides(model_dir: Path, data_file: Path, out: Path, steps: int) -> list[str]:
    return [
        f"model.name_or_path={model_dir}",
        f"data.dataset={data_file}",
        f"output_dir={out}",
        f"training.max_steps={steps}",
    ]


RUN_SPECIFIC = ("output_dir", "run_name")


def run_grpolab(overrides: list[str], out: Path) -> dict:
    child, run_dir, records, info = grpolab_train(CONFIG, overrides, out, completion_length=32)
    final = [r for r in records if "train_runtime" in r][-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        **child,
        "train_runtime": final["train_runtime"],
        "global_step": summary["global_step"],
        "trl_args": info["trl_args"],
    }


def run_plain(kwargs: dict, model_dir: Path, data_file: Path, out: Path) -> dict:
    config_file = out / "grpo_config.json"
    config_file.write_text(json.dumps(kwargs))
    child = run_child(
        [PYTHON, str(REPO / "bench" / "plain_trl_grpo.py"), str(config_file), str(model_dir), str(data_file)]
    )
    line = [ln for ln in child["output"].splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line.removeprefix("RESULT "))
    return {**child, "train_runtime": result["train_runtime"], "global_step": result["global_step"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="runs of each script per model size (default 5)")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run (default 30)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="grpolab-bench-overhead-"))
    try:
        data_file = write_addition_jsonl(work / "addition.jsonl")
        peaks = {dtype: matmul_peak_flops(dtype=dtype) for dtype in ("float32", "bfloat16")}
        sizes = {}
        for size, shape in SIZES.items():
            model_dir = work / f"model-{size}"
            params = build_model(model_dir, **shape)
            samples = {"grpolab": [], "plain_trl": []}
            trl_args = None  # what the first grpolab run passed to GRPOConfig
            for rep in range(args.reps):
                order = ["grpolab", "plain_trl"] if rep % 2 == 0 else ["plain_trl", "grpolab"]
                for impl in order:
                    out = work / f"{size}-{impl}-{rep}"
                    out.mkdir()
                    overrides = grpolab_overrides(model_dir, data_file, out, args.steps)
                    if impl == "grpolab":
                        run = run_grpolab(overrides, out)
                        used = {k: v for k, v in run["trl_args"].items() if k not in RUN_SPECIFIC}
                        if trl_args is not None and used != trl_args:
                            raise SystemExit(f"grpolab runs used different GRPOConfig arguments: {used} vs {trl_args}")
                        trl_args = used
                    else:
                        run = run_plain(
                            {**trl_args, "output_dir": str(out), "run_name": "plain"}, model_dir, data_file, out
                        )
                    if run["global_step"] != args.steps:
                        raise SystemExit(f"{impl} ran {run['global_step']} steps, expected {args.steps}")
                    samples[impl].append(
                        {
                            "step_s": run["train_runtime"] / run["global_step"],
                            "wall_s": run["wall_s"],
                            "peak_rss_mib": run["peak_rss_mib"],
                        }
                    )
                    print(
                        f"  {size:>5} {impl:<10} rep {rep}: {samples[impl][-1]['step_s'] * 1000:7.1f} ms/step, "
                        f"{run['wall_s']:5.1f} s wall, {run['peak_rss_mib']:6.0f} MiB",
                        flush=True,
                    )
                    shutil.rmtree(out)
            med = {
                impl: {k: median([s[k] for s in runs]) for k in ("step_s", "wall_s", "peak_rss_mib")}
                for impl, runs in samples.items()
            }
            # overhead.yaml: 16 completions of 32 tokens after a 6-token prompt, beta 0, on-policy.
            flops = flops_per_step(params, 6, 32, 16, reference=False, old_logprobs=False)
            sizes[size] = {
                "parameters": params,
                "shape": shape,
                "grpo_config": trl_args,  # both scripts' GRPOConfig arguments
                "samples": samples,
                "median": med,
                "ratio_step_time": med["grpolab"]["step_s"] / med["plain_trl"]["step_s"],
                # Each repetition's pair ran back to back: the median of the pairs' ratios is the
                # steadier figure when the machine drifts between repetitions.
                "ratio_step_time_paired": median(
                    [g["step_s"] / p["step_s"] for g, p in zip(samples["grpolab"], samples["plain_trl"])]
                ),
                "ratio_wall_time": med["grpolab"]["wall_s"] / med["plain_trl"]["wall_s"],
                "ratio_peak_rss": med["grpolab"]["peak_rss_mib"] / med["plain_trl"]["peak_rss_mib"],
                "flops_per_step": flops,
                "precision": "bfloat16" if trl_args["bf16"] else "float32",
                "fraction_of_peak": {
                    impl: flops["total"] / m["step_s"] / peaks["bfloat16" if trl_args["bf16"] else "float32"]
                    for impl, m in med.items()
                },
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "matmul_peak_flops_per_s": peaks,
        "reps": args.reps,
        "steps": args.steps,
        "config": str(CONFIG.relative_to(REPO)),
        "targets": {"ratio_step_time": 1.03, "ratio_peak_rss": 1.05},
        "sizes": sizes,
    }
    path = write_result("overhead", result)
    print(
        f"\n{'model':>6} {'params':>8} {'grpolab ms/step':>16} {'plain ms/step':>14} "
        f"{'ratio':>6} {'paired':>7} {'wall ratio':>10} {'peak RSS ratio':>15} {'of peak':>8}"
    )
    for size, r in sizes.items():
        m = r["median"]
        print(
            f"{size:>6} {r['parameters'] / 1e6:>7.2f}M {m['grpolab']['step_s'] * 1000:>16.1f} "
            f"{m['plain_trl']['step_s'] * 1000:>14.1f} "
            f"{r['ratio_step_time']:>6.3f} {r['ratio_step_time_paired']:>7.3f} "
            f"{r['ratio_wall_time']:>10.3f} {r['ratio_peak_rss']:>15.3f} "
            f"{r['fraction_of_peak']['grpolab']:>8.1%}"
        )
    print(
        "(of peak: FLOP estimate / step time / the measured matmul peak: "
        f"{peaks['float32'] / 1e9:.0f} GFLOP/s fp32, {peaks['bfloat16'] / 1e9:.0f} "
        "GFLOP/s bf16)"
    )
    print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
