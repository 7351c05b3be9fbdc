"""What `grpolab train` prints (issue 21, section 8 and the probe's train-side findings): library
warnings the user cannot act on are filtered and grpolab's and the user's own warnings stay; a
bad config is its error alone, before torch/transformers/trl load; warnings say what is true."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import child_env, fast_settings

from grpolab.config import GRPOConfigLoader
from grpolab.config.derive import derive
from grpolab.train.setup import UNACTIONABLE

# Printed by a tiny CPU run with WandB offline before the filter (transformers 5.24, wandb offline):
# each is a real line the console showed, and the filter's list names each.
SEEN_BEFORE = (
    "`is_gradient_checkpointing` is deprecated",
    "URL not available in offline run",
    "[INFO] Running in WANDB offline mode",
)

REWARD = """
import warnings

def noisy(completions, **kwargs):
    warnings.warn("noisy reward: check the answer column")
    return [0.0] * len(completions)
"""


@pytest.mark.slow
def test_unactionable_library_warnings_are_filtered_and_actionable_ones_stay(tiny_gpt2, tmp_path):
    (tmp_path / "noisy_reward.py").write_text(REWARD)
    settings = fast_settings(tiny_gpt2, tmp_path / "runs", {"logging": {"report_to": ["wandb"]}})
    settings["rewards"] = [{"name": f"{tmp_path / 'noisy_reward.py'}:noisy", "weight": 1.0}]
    (tmp_path / "c.yaml").write_text(json.dumps(settings))
    env = dict(child_env(), WANDB_MODE="offline")
    done = subprocess.run(
        [sys.executable, "-m", "grpolab", "train", "--config", str(tmp_path / "c.yaml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-3000:]
    for text in SEEN_BEFORE:
        assert text not in console, text
    assert "grpo.num_generations: 2 is outside the recommended range" in console  # grpolab's own warning
    assert "noisy reward: check the answer column" in console  # the user's code warns: that stays
    assert "wandb: offline" in console  # grpolab's own line on the offline run


def test_every_seen_warning_is_in_the_one_list():
    import re

    for text in SEEN_BEFORE:
        assert any(re.search(pattern, text) for pattern in UNACTIONABLE), text
    assert not any(re.search(p, "noisy reward: check the answer column") for p in UNACTIONABLE)


def test_a_bad_mode_prints_the_error_alone(capsys):
    from grpolab.cli.main import main

    assert main(["train", "--mode", "foo"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and "foo" in err and "demo" not in err


BAD = {
    "unknown key": (["--set", "training.no_such_key=1"], None),
    "wrong type": (["--set", "grpo.beta=abc"], None),
    "bad mode": (["--mode", "foo"], None),
    "bad file": ([], {"training": {"learning_rate": "fast"}}),
    "seed": ([], {"training": {"seed": -1}}),
    "not a run": (["--resume", "."], None),
}


def test_a_bad_config_exits_2_before_torch_transformers_or_trl_import(tmp_path):
    """Every kind of config error `train` meets, in one child process that imports no heavy library
    (before, `train` imported the trainer stage, hence torch and transformers, first: seconds to
    minutes on a loaded machine before the one-line error)."""
    cases = {}
    for name, (argv, data) in BAD.items():
        if data is not None:
            path = tmp_path / f"{name.replace(' ', '_')}.yaml"
            path.write_text(json.dumps({"model": {"name_or_path": "x"}, **data}))
            argv = [*argv, "--config", str(path)]
        cases[name] = ["train", *argv]
    code = (
        "import json, sys\n"
        "from grpolab.cli.main import main\n"
        f"cases = {cases!r}\n"
        "out = {n: main(a) for n, a in cases.items()}\n"
        "out['heavy'] = sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules)\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result.pop("heavy") == [], done.stderr
    assert result == {name: 2 for name in BAD}, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("max_steps", [-1, 1, 2, 5])
@pytest.mark.parametrize("rows", [1, 2, 4, 100])
def test_step_count_warnings_blame_what_limits_the_steps(max_steps, rows, tmp_path, write_config):
    """With training.max_steps set the trainer repeats the rows until it is reached, so the rows
    never limit the steps: a `data.max_samples` warning then was false (it said `100 prompts give
    at most 1 optimizer step` for a run that stops at max_steps 1)."""
    extra = {"training": {"max_steps": max_steps, "num_train_epochs": 1}, "data": {"max_samples": rows}}
    loader = GRPOConfigLoader(config_path=write_config(fast_settings(None, tmp_path / "runs", extra)))
    keys = [w.key for w in loader.warnings]
    steps = derive(loader.config, 1, rows).total_optimizer_steps
    assert ("data.max_samples" in keys) == (max_steps <= 0 and steps <= 1), loader.warnings
    assert ("training.max_steps" in keys) == (max_steps == 1), loader.warnings
