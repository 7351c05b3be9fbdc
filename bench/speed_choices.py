"""Are the presets' speed choices the fast ones on this machine?

The local preset on CPU trains in fp32, without gradient checkpointing, with one torch thread per
core. Each alternative flips one of those, on the ~14M-parameter model and settings of
bench/growth.py (G 8, 32-token completions, 2 prompts per step): median seconds per optimizer
step and peak RSS, and the ratio to the preset's choice (> 1 = the alternative is slower).

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

CHOICES = {  # name: the --set overrides that flip one choice of the local preset
    "preset (fp32, no checkpointing, threads auto)": (),
    "gradient checkpointing on": ("training.gradient_checkpointing=true",),
    "bf16 autocast on CPU": ("training.bf16=true",),
    "1 thread instead of one per core": ("cluster.threads_per_process=1",),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run (default 8; the first is not timed)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="grpolab-bench-choices-"))
    results = {}
    try:
        data_file = write_addition_jsonl(work / "addition.jsonl")
        model_dir = work / "model"
        params = build_model(model_dir, **SIZES["14M"])
        for i, (name, extra) in enumerate(CHOICES.items()):
            out = work / f"choice-{i}"
            out.mkdir()
            results[name] = {"overrides": list(extra), **run_point(model_dir, data_file, out, 8, 32, args.steps, extra)}
            shutil.rmtree(out)
            print(f"  {name:<46} {results[name]['step_s'] * 1000:7.0f} ms/step, {results[name]['peak_rss_mib']:6.0f} MiB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = results[next(iter(CHOICES))]
    for r in results.values():
        r["step_time_vs_preset"] = r["step_s"] / base["step_s"]
        r["peak_rss_vs_preset"] = r["peak_rss_mib"] / base["peak_rss_mib"]
    path = write_result("speed_choices", {"parameters": params, "steps": args.steps, "choices": results})
    print(f"\n{'choice':<46} {'step time vs preset':>20} {'peak RSS vs preset':>19}")
    for name, r in results.items():
        print(f"{name:<46} {r['step_time_vs_preset']:>19.2f}x {r['peak_rss_vs_preset']:>18.2f}x")
    print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
