"""Where does the demo run's time go? py-spy samples `grpolab train --config configs/grpo_demo.yaml`
(as `make demo` runs it, fewer steps) and every sample is put in one bucket by the outermost frame
that names a phase (phases checked in the order of PHASES below, so held-out scoring that runs
inside a callback counts as held-out scoring, not as a callback):

  startup          imports, config, model and data loading, before the Trainer's train()
  generation       sampling completions (TRL's _generate, transformers' generate)
  reward scoring   TRL's _calculate_rewards (grpolab's reward wrapper and the reward itself)
  loss + backward  compute_loss and autograd
  optimizer        the optimizer step and zero_grad
  held-out scoring greedy accuracy before, during and after training
  logging/callbacks Trainer.log, every callback (grpolab's NaN guard too), trackers
  saving           checkpoints and the final model
  other            the rest of the training loop

Separately, the share of samples with grpolab's own code on the stack inside the training loop
(its callbacks and reward wrapper) is what grpolab adds to a step.

    .venv/bin/python bench/profile_demo.py [--steps 300] [--rate 200]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, REPO, child_env, write_result  # noqa: E402

# Held-out scoring (grpolab's evaluator: before, during and after training) is opt-in work, not
# overhead: it is its own bucket and is not counted as grpolab's own code in a step.
HELD_OUT = ["(grpolab/train/evaluate.py"]
# (bucket, markers): a sample goes to the first bucket with a marker in any of its frames.
PHASES = [
    ("held-out scoring", HELD_OUT),
    ("saving", ["_save_checkpoint (", "save_model (", "_save_final_model (", "save_pretrained ("]),
    (
        "logging/callbacks",
        ["_maybe_log_save_evaluate (", "callback_handler", "call_event (", "log (trl/", "log (transformers/trainer"],
    ),
    ("reward scoring", ["_calculate_rewards ("]),
    ("generation", ["_generate (", "_generate_single_turn (", "generate (transformers/"]),
    ("optimizer", ["optimizer_step (", "step (torch/optim", "zero_grad ("]),
    ("loss + backward", ["compute_loss (", "backward ("]),
]
TRAIN_LOOP = "_inner_training_loop ("


def classify(stack: list[str]) -> str:
    if not any(TRAIN_LOOP in frame for frame in stack) and not any(m in f for f in stack for m in HELD_OUT):
        return "startup" if not any("_save_final_model (" in f for f in stack) else "saving"
    for bucket, markers in PHASES:
        if any(m in frame for frame in stack for m in markers):
            return bucket
    return "other"


def grpolab_in_loop(stack: list[str]) -> str | None:
    """The outermost grpolab frame on a training-loop stack (its callbacks, its reward wrapper), or None."""
    in_loop = False
    for frame in stack:
        in_loop = in_loop or TRAIN_LOOP in frame
        if in_loop and "(grpolab/" in frame:
            return frame.split(" (")[0] + " (" + frame.split(" (")[1].split(":")[0] + ")"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default 200)")
    args = parser.parse_args()
    py_spy = Path(PYTHON).with_name("py-spy")
    if not py_spy.exists():
        py_spy = shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("py-spy is not installed: pip install py-spy (make bench installs it)")

    work = Path(tempfile.mkdtemp(prefix="grpolab-bench-profile-"))
    try:
        raw = work / "profile.txt"
        cmd = [
            str(py_spy),
            "record",
            "--format",
            "raw",
            "--rate",
            str(args.rate),
            "--output",
            str(raw),
            "--",
            PYTHON,
            "-m",
            "grpolab.cli.main",
            "train",
            "--config",
            "configs/grpo_demo.yaml",
            "--set",
            f"training.max_steps={args.steps}",
            "--set",
            f"output_dir={work / 'runs'}",
        ]
        proc = subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True)
        if proc.returncode != 0 or not raw.exists():
            raise SystemExit(f"profiling failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
        buckets, grpolab, total = Counter(), Counter(), 0
        for line in raw.read_text().splitlines():
            stack_text, _, count = line.rpartition(" ")
            if not stack_text:
                continue
            stack, n = stack_text.split(";"), int(count)
            buckets[classify(stack)] += n
            own = grpolab_in_loop(stack)
            if own and classify(stack) != "held-out scoring":
                grpolab[own] += n
            total += n
    finally:
        shutil.rmtree(work, ignore_errors=True)

    loop = total - buckets["startup"]
    shares = {bucket: n / total for bucket, n in buckets.most_common()}
    result = {
        "command": "grpolab train --config configs/grpo_demo.yaml --set training.max_steps=" + str(args.steps),
        "samples": total,
        "rate_per_s": args.rate,
        "share_of_run": shares,
        "share_of_training_loop": {b: n / loop for b, n in buckets.items() if b != "startup"},
        "grpolab_code_share_of_training_loop": sum(grpolab.values()) / loop,
        "grpolab_functions_share_of_training_loop": {f: n / loop for f, n in grpolab.most_common()},
    }
    path = write_result("profile_demo", result)
    print(f"{'phase':<18} {'% of run':>8} {'% of loop':>9}")  # loop = everything after startup
    for bucket, share in shares.items():
        in_loop = "" if bucket == "startup" else f"{buckets[bucket] / loop:>9.1%}"
        print(f"{bucket:<18} {share:>8.1%} {in_loop}")
    print(
        f"grpolab's own code inside the training loop: {sum(grpolab.values()) / loop:.2%} "
        f"of loop samples ({total} samples in all):"
    )
    for func, n in grpolab.most_common(5):
        print(f"  {n / loop:6.2%}  {func}")
    print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
