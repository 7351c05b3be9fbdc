"""Are the presets' speed choices the fast ones on this machine?

On CPU the local preset trains without gradient checkpointing, with one torch thread per core, and
with bf16 autocast only where the CPU computes bf16 natively (AVX512-BF16/AMX), else in fp32. Each
alternative flips one of those, with the settings of bench/growth.py (G 8, 32-token completions, 2
prompts per step), on the tiny and the ~14M-parameter random-init models of bench/overhead.py:
median seconds per optimizer step and peak RSS, and the ratio to the preset's choice (> 1 = the
alternative is slower).

    .venv/bin/python bench/speed_choices.py [--steps 8]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, build_model, write_addition_jsonl, write_result  # noqa: E402
from growth import run_point  # noqa: E402
from overhead import SIZES  # noqa: E402

from grpolab.runtime.hardware import cpu_has_bf16  # noqa: E402

NATIVE_BF16 = cpu_has_bf16()
CHOICES = {  # name: the --set overrides that flip one choice of the local preset
    f"preset ({'bf16 autocast' if NATIVE_BF16 else 'fp32'}, no checkpointing, threads auto)": (),
    "gradient checkpointing on": ("training.gradient_checkpointing=true",),
    ("fp32 instead of bf16 autocast" if NATIVE_BF16 else "bf16 autocast instead of fp32"): (
        f"training.bf16={'false' if NATIVE_BF16 else 'true'}",
    ),
    "1 thread instead of one per core": ("cluster.threads_per_process=1",),
}
SIZES_RUN = ("tiny", "14M")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=8, help="optimizer steps per run (default 8; the first is not timed)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="grpolab-bench-choices-"))
    sizes = {}
    try:
        data_file = write_addition_jsonl(work / "addition.jsonl")
        for size in SIZES_RUN:
            model_dir = work / f"model-{size}"
            params = build_model(model_dir, **SIZES[size])
            results = {}
            for i, (name, extra) in enumerate(CHOICES.items()):
                out = work / f"{size}-choice-{i}"
                out.mkdir()
                results[name] = {
                    "overrides": list(extra),
                    **run_point(model_dir, data_file, out, 8, 32, args.steps, extra),
                }
                shutil.rmtree(out)
                print(
                    f"  {size:>5} {name:<50} {results[name]['step_s'] * 1000:7.0f} ms/step, "
                    f"{results[name]['peak_rss_mib']:6.0f} MiB",
                    flush=True,
                )
            base = results[next(iter(CHOICES))]
            for r in results.values():
                r["step_time_vs_preset"] = r["step_s"] / base["step_s"]
                r["peak_rss_vs_preset"] = r["peak_rss_mib"] / base["peak_rss_mib"]
            sizes[size] = {"parameters": params, "choices": results}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    path = write_result("speed_choices", {"cpu_native_bf16": NATIVE_BF16, "steps": args.steps, "sizes": sizes})
    print(f"\n{'choice (step time / peak RSS vs the preset)':<50} " + " ".join(f"{s:>16}" for s in sizes))
    for name in CHOICES:
        print(
            f"{name:<50} "
            + " ".join(
                f"{r['choices'][name]['step_time_vs_preset']:>7.2f}x/"
                f"{r['choices'][name]['peak_rss_vs_preset']:>6.2f}x  "
                for r in sizes.values()
            )
        )
    print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
