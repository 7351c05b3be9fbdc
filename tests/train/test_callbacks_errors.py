"""Errors and faults, each by message and exit code: a model that is not local with the Hub
offline, rewards that do not import, NaN training. (Missing columns: test_train_data.py; a
reward that raises: test_train_rewards.py; signals and --resume: test_train_resume.py.)"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import PYTHON, REPO_ROOT

MISSING = "my-org/not-a-real-model-xyz"


def _assert_offline_model_message(text: str) -> None:
    assert text.count("error:") == 1, text  # one message, not a traceback
    assert "Traceback" not in text
    assert f"`{MISSING}`" in text
    assert "HF_HUB_OFFLINE" in text
    assert "pass a local path" in text and "cache" in text


def test_model_not_local_with_hub_offline(fast_config, train):
    result = train("--config", fast_config(None), "--model", MISSING)
    assert result.code == 2, result
    _assert_offline_model_message(result.err)


def test_model_not_local_exit_code_from_the_cli(tmp_path, subprocess_env):
    proc = subprocess.run(
        [
            PYTHON,
            str(REPO_ROOT / "training" / "grpo_training.py"),
            "--model",
            MISSING,
            "--set",
            "logging.report_to=[none]",
            "--dry-run",
        ],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    _assert_offline_model_message(proc.stderr)
    assert not (tmp_path / "grpo_results_local").exists()


def test_local_model_path_that_does_not_exist(tmp_path, fast_config, train):
    result = train("--config", fast_config(str(tmp_path / "no-such-model")))
    assert result.code == 2
    assert "no model folder at" in result.err and "no-such-model" in result.err and "save_pretrained" in result.err


@pytest.mark.parametrize("kind", ["bad module", "missing function", "missing file"])
def test_reward_that_does_not_import_exits_2_naming_it(kind, tiny_gpt2, tmp_path, fast_config, train):
    (tmp_path / "have.py").write_text("def there(completions, **kw):\n    return [0.0] * len(completions)\n")
    spec, expected = {
        "bad module": (
            "not_a_module_abc:score",
            "reward `not_a_module_abc:score` could not be imported: ModuleNotFoundError",
        ),
        "missing function": (f"{tmp_path}/have.py:absent", "it has: there"),
        "missing file": (f"{tmp_path}/gone.py:score", f"reward file `{tmp_path}/gone.py` not found"),
    }[kind]
    result = train("--config", fast_config(tiny_gpt2, {"rewards": [{"name": spec}]}))
    assert result.code == 2, result
    assert expected in result.err and "rewards[0].name" in result.err
    assert not (tmp_path / "runs").exists()  # caught before any run directory is made


@pytest.mark.parametrize("logging_steps", [1, 3], ids=["logging every step", "between logging steps"])
def test_nan_training_stops_with_a_checkpoint_and_says_so(logging_steps, tiny_gpt2, tmp_path, fast_config, train):
    """A reward of 1e38 for every other completion, with advantages not rescaled, overflows the
    gradients: grad_norm is NaN and the clipped update turns the weights NaN. Without the guard
    the next generation round crashes in sampling ("probability tensor contains inf/nan")."""
    reward = tmp_path / "huge.py"
    reward.write_text(
        "def huge(completions, **kw):\n    return [1e38 if i % 2 else 0.0 for i in range(len(completions))]\n"
    )
    cfg = fast_config(
        tiny_gpt2,
        {
            "rewards": [{"name": f"{reward}:huge"}],
            "grpo": {"scale_rewards": "none"},
            "training": {"max_steps": 4, "logging_steps": logging_steps},
        },
    )
    result = train("--config", cfg)
    assert result.code == 1, result
    assert "run failed" in result.out and "diverged (NaN) at step 1" in result.out and "checkpoint" in result.out
    run_dir = result.run_dir
    assert (run_dir / "checkpoint-1").is_dir()
    assert not (run_dir / "model").exists()  # a NaN model is not saved as the result
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["status"] == "failed" and info["exit_code"] == 1 and info["global_step"] == 1
    assert "NaN" in info["error"] and "checkpoint-1" in info["error"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    if logging_steps == 1:
        assert metrics[0]["step"] == 1 and metrics[0]["grad_norm"] != metrics[0]["grad_norm"]  # NaN, logged honestly
    assert "weights became NaN" in info["error"]  # checked after every optimizer step, logged or not
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_huge_but_finite_weights_stop_at_sampling_with_a_checkpoint(tiny_gpt2, tmp_path, fast_config, train):
    """A learning rate of 1e9 moves every weight by ~1e9 in one Adam step: still finite (the NaN
    guard passes them), but the next round's logits overflow and torch.multinomial refuses them."""
    reward = tmp_path / "alternate.py"
    reward.write_text(
        "def alternate(completions, **kw):\n    return [float(i % 2) for i in range(len(completions))]\n"
    )
    cfg = fast_config(
        tiny_gpt2, {"rewards": [{"name": f"{reward}:alternate"}], "training": {"max_steps": 4, "learning_rate": 1e9}}
    )
    result = train("--config", cfg)
    assert result.code == 1, result
    assert "Traceback" not in result.err and "probability tensor" not in result.err
    assert "inf/NaN probabilities" in result.out and "checkpoint-1" in result.out and "learning_rate" in result.out
    run_dir = result.run_dir
    assert (run_dir / "checkpoint-1" / "trainer_state.json").is_file()  # a full checkpoint: --resume can use it
    assert not (run_dir / "model").exists()
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["status"] == "failed" and info["exit_code"] == 1 and info["global_step"] == 1
    assert "logits overflowed" in info["error"]


def test_sampling_failure_across_ranks_names_no_new_checkpoint():
    """With several ranks a save is collective and the others may still be sampling: no save."""
    from types import SimpleNamespace

    from grpolab.train.callbacks import NanLossCallback
    from grpolab.train.trainer import Guards, fit

    class Trainer:
        accelerator = SimpleNamespace(num_processes=2)
        state = SimpleNamespace(global_step=3)

        def train(self, resume_from_checkpoint=None):
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")

        def _save_checkpoint(self, model, trial):
            raise AssertionError("saved from one rank")

    stopper = SimpleNamespace(uninstall=lambda: None, signal_name=None)
    outcome = fit(Trainer(), Guards(NanLossCallback(), stopper, None), None)
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert "step 3" in outcome.error and "last checkpoint saved before it stands" in outcome.error

    class Broken(Trainer):
        def train(self, resume_from_checkpoint=None):
            raise RuntimeError("some other failure")

    with pytest.raises(RuntimeError, match="some other failure"):  # only sampling's refusal is caught
        fit(Broken(), Guards(NanLossCallback(), stopper, None), None)


def test_nan_guard_sees_a_nan_loss_the_trainer_hides_from_its_logs():
    """transformers' logging_nan_inf_filter replaces a NaN loss in the logs; the guard checks the weights."""
    import torch
    from transformers import TrainerControl, TrainerState

    from grpolab.train.callbacks import NanLossCallback

    guard, state = NanLossCallback(), TrainerState()
    state.global_step = 7
    model = torch.nn.Linear(2, 2)
    control = TrainerControl()
    guard.on_step_end(None, state, control, model=model)
    guard.on_log(None, state, control, logs={"loss": 0.5, "grad_norm": 1.0})
    assert guard.nan_step is None and not control.should_training_stop
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    guard.on_step_end(None, state, control, model=model)
    assert guard.nan_step == 7 and control.should_save and control.should_training_stop and "NaN" in guard.reason

    other, control = NanLossCallback(), TrainerControl()
    other.on_log(None, state, control, logs={"loss": float("inf")})
    assert other.nan_step == 7 and control.should_save and "loss is inf" in other.reason


def test_nan_guard_sees_inf_and_minus_inf_weights_of_any_dtype():
    import torch
    from transformers import TrainerControl, TrainerState

    from grpolab.train.callbacks import NanLossCallback

    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for bad in (float("inf"), float("-inf")):
            model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)).to(dtype)
            guard, state, control = NanLossCallback(), TrainerState(), TrainerControl()
            with torch.no_grad():
                model[0].weight.fill_(20000.0)  # finite, but their norm (80000) is past the fp16 maximum
            guard.on_step_end(None, state, control, model=model)
            assert guard.nan_step is None, (dtype, "finite weights flagged")
            with torch.no_grad():
                model[1].bias[1] = bad
            guard.on_step_end(None, state, control, model=model)
            assert guard.nan_step == 0 and control.should_training_stop, (dtype, bad)


def test_liger_forced_on_where_it_cannot_run_is_a_usage_error(tiny_gpt2, fast_config, train):
    result = train("--config", fast_config(tiny_gpt2, {"training": {"use_liger_kernel": True}}), "--dry-run")
    assert result.code == 2
    assert "training.use_liger_kernel" in result.err and "set `training.use_liger_kernel: auto`" in result.err
    assert "Traceback" not in result.err


def test_threads_per_process_sets_torch_threads_and_is_shown(tiny_gpt2, fast_config, train):
    import torch

    before = torch.get_num_threads()
    try:
        result = train("--config", fast_config(tiny_gpt2, {"cluster": {"threads_per_process": 1}}), "--dry-run")
        assert result.code == 0, result.err
        assert torch.get_num_threads() == 1
        assert (
            "1 CPU thread(s) each" in result.out
            and "gradient checkpointing off" in result.out
            and "Liger off" in result.out
        )
    finally:
        torch.set_num_threads(before)
