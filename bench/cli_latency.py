"""How fast are `grpolab config validate` and `config explain` next to just importing trl?

Runs `grpolab config validate configs/grpo_cluster.yaml`, `grpolab config explain --mode
cluster --world-size 8` and `python -c "import trl"`
interleaved, N times each (after one untimed warm-up of each), prints the medians and their
ratio, and writes bench/results/cli_latency.json.

trl 1.x imports lazily: `import trl` alone loads almost nothing, and the cost (torch,
transformers) comes with the first attribute. So a third command, `python -c "from trl
import GRPOConfig"` (what checking a config against TRL itself would need), is timed too,
and `python -c pass`, the interpreter's own start, which no command can beat.

    .venv/bin/python bench/cli_latency.py [--n 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "cli_latency.json"


def grpolab_command(*args: str) -> list[str]:
    """The venv's `grpolab` console script when it is there, else `python -m grpolab.cli.main`."""
    script = Path(sys.executable).with_name("grpolab")
    if script.exists() or shutil.which("grpolab"):
        return [str(script if script.exists() else shutil.which("grpolab")), *args]
    return [sys.executable, "-m", "grpolab.cli.main", *args]


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=7, help="timed repetitions of each command (default 7)")
    args = parser.parse_args()

    commands = {
        "validate": grpolab_command("config", "validate", "configs/grpo_cluster.yaml"),
        "explain": grpolab_command("config", "explain", "--mode", "cluster", "--world-size", "8"),
        "import_trl": [sys.executable, "-c", "import trl"],
        "import_trl_grpoconfig": [sys.executable, "-c", "from trl import GRPOConfig"],
        "python_startup": [sys.executable, "-c", "pass"],  # the floor: the interpreter alone
    }
    for cmd in commands.values():
        timed(cmd)  # warm-up: page cache, .pyc files
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.n):
        for name, cmd in commands.items():  # interleaved, so drift hits both alike
            samples[name].append(timed(cmd))

    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratio = medians["import_trl"] / medians["validate"]
    ratio_config = medians["import_trl_grpoconfig"] / medians["validate"]
    result = {
        "measured": time.strftime("%Y-%m-%d"),
        "n": args.n,
        "commands": {
            name: " ".join(os.path.relpath(c, REPO) if os.path.isabs(c) else c for c in cmd)
            for name, cmd in commands.items()
        },
        "seconds": {name: [round(v, 4) for v in values] for name, values in samples.items()},
        "median_seconds": {name: round(v, 4) for name, v in medians.items()},
        "import_trl_over_validate": round(ratio, 2),
        "import_trl_grpoconfig_over_validate": round(ratio_config, 2),
        "import_trl_over_explain": round(medians["import_trl"] / medians["explain"], 2),
        "import_trl_grpoconfig_over_explain": round(medians["import_trl_grpoconfig"] / medians["explain"], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": {
            name: version(name) for name in ("grpolab", "trl", "transformers", "torch", "pydantic", "ruamel.yaml")
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"grpolab config validate configs/grpo_cluster.yaml  median {medians['validate'] * 1000:7.1f} ms  (n={args.n})"
    )
    print(f"grpolab config explain --mode cluster ...      median {medians['explain'] * 1000:7.1f} ms  (n={args.n})")
    print(
        "python -c 'import trl'                             median "
        f"{medians['import_trl'] * 1000:7.1f} ms  (n={args.n})"
    )
    print(
        "python -c 'from trl import GRPOConfig'             median "
        f"{medians['import_trl_grpoconfig'] * 1000:7.1f} ms  (n={args.n})"
    )
    print(
        "python -c pass (interpreter start, the floor)   median "
        f"{medians['python_startup'] * 1000:7.1f} ms  (n={args.n})"
    )
    print(f"import trl / validate: {ratio:.2f}x;  from trl import GRPOConfig / validate: {ratio_config:.1f}x")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
