"""`config import` of Open-R1 recipes: the world they are meant for (`--gpus N --vllm-gpus K`)
and Open-R1's reward names mapped to the grpolab rewards of the same definition, or a refusal
listing the ones without an equivalent (never a config that trains a different reward)."""

from __future__ import annotations

import re

import pytest

from grpolab.cli.main import main
from grpolab.config import GRPOConfigLoader
from grpolab.rewards import build

# The batch shape of Open-R1's recipes/.../config_demo_code.yaml: valid on 7 training GPUs
# (16 x 7 x 4 = 448 completions, 32 groups of 14), not on one (64 is not a multiple of 14).
DEMO_SHAPE = """\
model_name_or_path: Qwen/Qwen2.5-1.5B-Instruct
dataset_name: open-r1/verifiable-coding-problems-python
dataset_prompt_column: problem
use_vllm: true
per_device_train_batch_size: 16
gradient_accumulation_steps: 4
num_generations: 14
max_completion_length: 2048
"""


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_world_validation_and_num_processes(tmp_path, capsys):
    recipe = write(tmp_path, DEMO_SHAPE + "reward_funcs: [accuracy, format]\nreward_weights: [1.0, 0.1]\n")
    out = tmp_path / "out.yaml"
    assert main(["config", "import", recipe, "-o", str(out)]) == 2  # validated for one process
    assert "num_generations = 14" in capsys.readouterr().err and not out.exists()
    assert main(["config", "import", recipe, "-o", str(out), "--gpus", "8", "--vllm-gpus", "1"]) == 0
    cfg = GRPOConfigLoader(config_path=out).config
    assert (cfg.mode, cfg.cluster.num_processes, cfg.cluster.use_vllm, cfg.cluster.vllm_mode) == (
        "cluster",
        7,
        True,
        "server",
    )
    assert "num_processes: 7  # from `--gpus`" in out.read_text()


def test_vllm_gpus_must_leave_training_gpus(tmp_path, capsys):
    recipe = write(tmp_path, DEMO_SHAPE + "reward_funcs: [accuracy]\n")
    assert main(["config", "import", recipe, "--gpus", "2", "--vllm-gpus", "2"]) == 2
    assert "keep at least one GPU for training" in capsys.readouterr().err
    colocate = write(tmp_path, DEMO_SHAPE + "vllm_mode: colocate\nreward_funcs: [accuracy]\n", "colocate.yaml")
    assert main(["config", "import", colocate, "--gpus", "8", "--vllm-gpus", "1"]) == 2
    assert "reserves GPUs for a vLLM server" in capsys.readouterr().err


def test_open_r1_reward_names_map_with_their_settings(tmp_path):
    recipe = write(
        tmp_path,
        DEMO_SHAPE.replace("gradient_accumulation_steps: 4", "gradient_accumulation_steps: 7")
        + "reward_funcs: [accuracy, format, tag_count, reasoning_steps, cosine, repetition_penalty, length,"
        " soft_overlong_punishment]\n"
        "reward_weights: [1.0, 0.5, 0.5, 0.2, 1.0, 0.1, 0.3, 0.4]\n"
        "cosine_max_len: 2000\nrepetition_n_grams: 4\nrepetition_max_penalty: -0.5\n"
        "max_completion_len: 2048\nsoft_punish_cache: 512\n",
    )
    out = tmp_path / "out.yaml"
    assert main(["config", "import", recipe, "-o", str(out)]) == 0
    cfg = GRPOConfigLoader(config_path=out).config
    got = [(r.name, r.weight) for r in cfg.rewards]
    assert got == [
        ("math_verify", 1.0),
        ("format", 0.5),
        ("tag_count", 0.5),
        ("reasoning_steps", 0.2),
        ("cosine_length", 1.0),
        ("repetition_penalty", 0.1),
        ("kimi_length", 0.3),
        ("length_penalty", 0.4),
    ]
    kwargs = {r.name: r.kwargs for r in cfg.rewards}
    assert kwargs["cosine_length"]["max_len"] == 2000 and kwargs["cosine_length"]["max_value_correct"] == 1.0
    assert kwargs["repetition_penalty"] == {"ngram_size": 4, "max_penalty": -0.5}
    assert kwargs["length_penalty"] == {"max_length": 2048, "soft_cache": 512}
    assert cfg.data.columns == {"problem": "prompt", "solution": "answer"}  # Open-R1's math rewards read solution
    assert "# cosine_max_len" not in out.read_text()  # consumed by the cosine reward, not left as a comment


def test_open_r1_format_reward_is_open_r1s_definition(tmp_path):
    recipe = write(tmp_path, DEMO_SHAPE + "reward_funcs: [format]\n")
    out = tmp_path / "out.yaml"
    assert main(["config", "import", recipe, "-o", str(out), "--gpus", "7"]) == 0
    spec = GRPOConfigLoader(config_path=out).config.rewards[0]
    (reward,), _ = build.build_rewards([spec], 8)
    pattern = r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"  # open_r1/rewards.py format_reward
    samples = [
        "<think>\nx\n</think>\n<answer>\n1\n</answer>",
        "<think>\nx\n</think>\n<answer>\n1\n</answer>\ntrailing",
        " <think>\nx\n</think>\n<answer>\n1\n</answer>",
        "<think>x</think><answer>1</answer>",
    ]
    open_r1 = [1.0 if re.match(pattern, s, re.DOTALL | re.MULTILINE) else 0.0 for s in samples]
    assert reward(["p"] * 4, samples) == open_r1 == [1.0, 1.0, 0.0, 0.0]


def test_rewards_without_an_equivalent_fail_listing_them(tmp_path, capsys):
    recipe = write(tmp_path, DEMO_SHAPE + "reward_funcs: [code, accuracy, code_format, my_own]\n")
    out = tmp_path / "out.yaml"
    assert main(["config", "import", recipe, "-o", str(out), "--gpus", "8", "--vllm-gpus", "1"]) == 2
    err = capsys.readouterr().err
    assert "3 reward(s) have no grpolab equivalent" in err
    for name in ("code (Open-R1: runs", "code_format (Open-R1:", "my_own (neither"):
        assert name in err
    assert not out.exists()


@pytest.mark.parametrize("use_peft, quantized", [(True, True), (False, False)])
def test_load_in_4bit_maps_to_qlora(tmp_path, use_peft, quantized):
    from grpolab.experiment.recipe_import import import_recipe

    text = DEMO_SHAPE + f"use_peft: {str(use_peft).lower()}\nload_in_4bit: true\nbnb_4bit_quant_type: nf4\n"
    imported = import_recipe(write(tmp_path, text + "reward_funcs: [accuracy]\n"), gpus=7)
    out = tmp_path / "q.yaml"
    out.write_text(imported.text)
    q = GRPOConfigLoader(config_path=out).config.model.quantization
    assert (q is not None) == quantized
    if quantized:
        assert q.load_in_4bit and q.quant_type == "nf4"
    else:
        assert {k for k, _, _ in imported.unmapped} >= {"load_in_4bit", "bnb_4bit_quant_type"}
