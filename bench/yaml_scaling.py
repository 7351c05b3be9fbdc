"""Does reading and validating a config cost time linear in its size, and are absurd files refused fast?

Issue 21 section 6: a 3 MB config (an `env:` map of 60k entries) ran past 120 s, time growing about
quadratically (1k entries 0.74 s, 3k 2.9 s), and deep nesting was a RecursionError traceback.
Here, in one process (no start-up), `GRPOConfigLoader(config_path=F).config` is timed for files of
growing size in several shapes (a large `env:` map, block and flow; a long list; many unknown keys,
which are refused), the fastest of `--repeat` tries each; each shape gets a fitted exponent k
(time ~ bytes^k: 1 is linear, 2 quadratic). Then the files past the limits (size, nesting depth,
aliases that expand to billions of values) are timed until refused.

    .venv/bin/python bench/yaml_scaling.py [--sizes 1000 2000 4000 8000 16000 32000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import write_result  # noqa: E402

from grpolab.config import ConfigError, GRPOConfigLoader  # noqa: E402
from grpolab.config.yaml_io import MAX_CONFIG_BYTES, MAX_DEPTH  # noqa: E402

SHAPES = {
    "env map (block)": lambda n: "mode: local\nenv:\n" + "".join(f"  VAR_{i}: value_{i}\n" for i in range(n)),
    "env map (flow)": lambda n: "mode: local\nenv: {" + ", ".join(f"V{i}: {i}" for i in range(n)) + "}\n",
    "logging.tags list": lambda n: "mode: local\nlogging:\n  tags:\n" + "".join(f"    - t{i}\n" for i in range(n)),
    "unknown keys (refused)": lambda n: "mode: local\ntraining:\n" + "".join(f"  unknown_{i}: 1\n" for i in range(n)),
}


def absurd() -> dict[str, str]:
    laughs = ["mode: local", "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    laughs += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    block = ["mode: local", "env:"] + ["  " * (i + 1) + f"k{i}:" for i in range(400)]
    return {
        f"over {MAX_CONFIG_BYTES:,} bytes": "mode: local\nenv:\n" + "".join(f"  V{i}: v{i}\n" for i in range(120_000)),
        "flow nesting 5000 deep": "mode: local\nenv: " + "[" * 5000 + "]" * 5000 + "\n",
        "block nesting 400 deep": "\n".join(block) + " 1\n",
        "aliases expanding to 9^10 values": "\n".join(laughs) + "\n",
        f"flow nesting {MAX_DEPTH} deep (allowed depth, refused by the schema)": "mode: local\nenv: "
        + "[" * (MAX_DEPTH - 2)
        + "]" * (MAX_DEPTH - 2)
        + "\n",
    }


def validate(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        _ = GRPOConfigLoader(config_path=path).config  # validation runs on first access
        outcome = "ok"
    except ConfigError as exc:
        outcome = str(exc).splitlines()[0][:160]
    return time.perf_counter() - start, outcome


def fit(points) -> float:
    """Least-squares slope of log(time) against log(bytes)."""
    xs = [math.log(b) for b, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 16000, 32000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="yaml-scaling-"))
    path = folder / "config.yaml"
    path.write_text("mode: local\n")
    validate(path)  # imports and the schema's first build, once, outside the timings
    series = {}
    for name, make in SHAPES.items():
        points = []
        for n in args.sizes:
            text = make(n)
            path.write_text(text)
            size = path.stat().st_size
            if size > MAX_CONFIG_BYTES:
                continue
            best, outcome = min(validate(path) for _ in range(args.repeat))
            points.append({"entries": n, "bytes": size, "seconds": round(best, 4), "outcome": outcome})
            print(f"{name:<24} {n:>7} entries {size:>9} bytes {best:7.3f} s  {outcome[:60]}", flush=True)
        k = fit([(p["bytes"], p["seconds"]) for p in points])
        per_mb = points[-1]["seconds"] / (points[-1]["bytes"] / 1e6)
        series[name] = {"points": points, "exponent": round(k, 2), "seconds_per_MB_at_largest": round(per_mb, 2)}
        print(f"{name:<24} time ~ bytes^{k:.2f}; {per_mb:.1f} s per MB at the largest", flush=True)
    refused = {}
    for name, text in absurd().items():
        path.write_text(text)
        seconds, outcome = validate(path)
        refused[name] = {"bytes": path.stat().st_size, "seconds": round(seconds, 4), "outcome": outcome}
        print(f"{name:<40} {seconds:7.3f} s  {outcome[:100]}", flush=True)
    out = write_result(
        "yaml_scaling",
        {
            "question": "is validate time linear in the config's size, and are absurd files refused fast?",
            "limits": {"bytes": MAX_CONFIG_BYTES, "depth": MAX_DEPTH},
            "series": series,
            "refused": refused,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
