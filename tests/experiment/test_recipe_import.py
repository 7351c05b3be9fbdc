"""`grpolab config import`: flat TRL / Open-R1 recipes (tests/recipes/) -> sectioned grpolab
configs whose TRL keyword arguments equal the recipe's, with every unmapped key reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO_ROOT, machine

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.trl_snapshot import trl_fields
from grpolab.config.yaml_io import parse_yaml_text, read_yaml_file, to_plain
from grpolab.experiment.recipe_import import import_recipe

RECIPES = REPO_ROOT / "tests" / "recipes"
# Keys grpolab resolves elsewhere than loader.trl_kwargs(): trust_remote_code is set by the
# pipeline from model.trust_remote_code (checked separately below).
NOT_IN_KWARGS = {"trust_remote_code"}


def load_recipe(name: str) -> dict:
    path = RECIPES / name
    return to_plain(read_yaml_file(path), str(path))


def imported_loader(tmp_path: Path, name: str):
    imported = import_recipe(RECIPES / name)
    out = tmp_path / f"{Path(name).stem}.yaml"
    out.write_text(imported.text)
    return imported, GRPOConfigLoader(config_path=out)


def trl_view(loader: GRPOConfigLoader, recipe: dict) -> dict:
    """loader.trl_kwargs() as TRL would get them on a GPU machine with vLLM when the recipe asks for it."""
    wants = {key: recipe.get(key) is True for key in ("use_vllm", "use_liger_kernel")}
    kwargs = loader.trl_kwargs(
        facts=machine("cuda", bf16=True, vllm=wants["use_vllm"], liger=wants["use_liger_kernel"])
    )
    kwargs["gradient_checkpointing"] = kwargs.pop("activation_checkpointing")  # transformers 5's new name
    return kwargs


def grpo_config_keys(recipe: dict, unmapped) -> list[str]:
    fields = trl_fields()
    skipped = {key for key, _, _ in unmapped}
    return [
        k
        for k in recipe
        if (k in fields["grpo"] or k in fields["training"]) and k not in skipped and k not in NOT_IN_KWARGS
    ]


@pytest.mark.parametrize("name", ["trl_qwen_gsm8k.yaml", "openr1_vllm_zero3.yaml", "trl_colocate_minimal.yaml"])
def test_trl_kwargs_equal_the_recipe(tmp_path, name):
    recipe = load_recipe(name)
    imported, loader = imported_loader(tmp_path, name)
    kwargs = trl_view(loader, recipe)
    keys = grpo_config_keys(recipe, imported.unmapped)
    assert len(keys) >= 8
    for key in keys:
        expected = recipe[key]
        if key == "report_to" and isinstance(expected, str) and expected != "none":
            expected = [expected]
        if key == "learning_rate" and isinstance(expected, str):
            expected = float(expected)  # TRL's parser reads a quoted "5e-7" as a number too
        if key == "reward_weights":
            continue  # below: only the weights of rewards grpolab can run
        assert kwargs.get(key) == expected, key
    assert loader.config.model.trust_remote_code == recipe.get("trust_remote_code", False)


def test_every_recipe_key_is_mapped_or_reported():
    for path in sorted(RECIPES.glob("*.yaml")):
        recipe = load_recipe(path.name)
        imported = import_recipe(path)
        reported = {key.split("[")[0] for key, _, _ in imported.unmapped}
        for key in recipe:
            assert key in imported.mapped or key in reported, f"{path.name}: {key} was dropped"
        for key, _value, why in imported.unmapped:
            assert why and f"# {key}: " in imported.text  # kept as a commented block


def test_qwen_recipe_sections(tmp_path):
    imported, loader = imported_loader(tmp_path, "trl_qwen_gsm8k.yaml")
    cfg = loader.config
    assert imported.mode == "local" and cfg.output_dir == "runs/qwen-gsm8k-grpo"
    assert (cfg.model.name_or_path, cfg.model.revision, cfg.model.dtype, cfg.model.attn_implementation) == (
        "Qwen/Qwen2.5-0.5B-Instruct",
        "main",
        "bfloat16",
        "sdpa",
    )
    assert (cfg.data.dataset, cfg.data.config_name, cfg.data.split, cfg.data.eval_split) == (
        "openai/gsm8k",
        "main",
        "train",
        "test",
    )
    assert [(r.name, r.weight) for r in cfg.rewards] == [
        ("trl.rewards:accuracy_reward", 1.0),
        ("trl.rewards:think_format_reward", 0.5),
    ]
    assert loader.trl_kwargs()["reward_weights"] == load_recipe("trl_qwen_gsm8k.yaml")["reward_weights"]
    assert (cfg.generation.max_completion_length, cfg.generation.temperature, cfg.generation.top_p) == (256, 0.9, 0.95)
    assert cfg.logging.report_to == ["wandb"] and cfg.env == {}
    assert sorted(k for k, _, _ in imported.unmapped) == ["max_prompt_length", "run_name"]
    # The local preset's generation_batch_size 8 follows the recipe's batch keys by itself (auto, as
    # TRL derives it), so the import needs no pin for it.
    assert cfg.grpo.generation_batch_size == "auto" and "generation_batch_size" not in loader.trl_kwargs()
    assert "generation_batch_size" not in imported.text


def test_open_r1_recipe_with_env_lora_vllm_and_accelerate(tmp_path):
    imported, loader = imported_loader(tmp_path, "openr1_vllm_zero3.yaml")
    cfg = loader.config
    assert imported.mode == "cluster"
    assert cfg.env == {
        "WANDB_PROJECT": "open-r1",
        "NCCL_DEBUG": "WARN",
        "HF_DATASETS_CACHE": "/scratch/hf-cache",
        "OMP_NUM_THREADS": "8",
    }
    lora = cfg.model.lora
    assert (lora.enabled, lora.r, lora.alpha, lora.dropout, lora.target_modules) == (
        True,
        32,
        64,
        0.05,
        ["q_proj", "k_proj", "v_proj", "o_proj"],
    )
    assert cfg.model.dtype == "bfloat16"  # from torch_dtype
    assert (
        cfg.cluster.use_vllm,
        cfg.cluster.vllm_mode,
        cfg.cluster.vllm_server_host,
        cfg.cluster.vllm_server_port,
    ) == (True, "server", "10.0.0.5", 8001)
    assert (cfg.cluster.backend, cfg.cluster.zero_stage, cfg.cluster.num_processes) == ("deepspeed", 3, 8)
    assert cfg.data.columns == {"problem": "prompt"} and cfg.data.system_prompt.startswith("You are a helpful")
    assert (cfg.logging.entity, cfg.logging.group, cfg.logging.report_to) == (
        "my-team",
        "math-lora",
        ["wandb", "tensorboard"],
    )
    # A dotted import path becomes module:function; TRL's soft overlong punishment is length_penalty;
    # Open-R1's tag_count is the built-in of the same definition.
    assert [(r.name, r.weight, r.kwargs) for r in cfg.rewards] == [
        ("my_rewards.math:boxed_accuracy", 1.0, {}),
        ("length_penalty", 0.2, {"max_length": 1280, "soft_cache": 256}),
        ("tag_count", 0.1, {}),
    ]
    assert {k for k, _, _ in imported.unmapped} == {"callbacks", "benchmarks"}
    assert cfg.training.num_train_epochs == 3.0  # TRL's default, not the cluster preset's 1


def test_colocate_recipe_reward_model_and_trl_defaults(tmp_path):
    imported, loader = imported_loader(tmp_path, "trl_colocate_minimal.yaml")
    cfg = loader.config
    assert cfg.training.warmup_steps == 0.05  # warmup_ratio -> a ratio in warmup_steps
    assert cfg.grpo.beta == 0.0 and cfg.generation.max_completion_length == 512  # TRL defaults, pinned over the preset
    # The reward model comes first in TRL's reward_weights.
    assert [(r.label, r.weight) for r in cfg.rewards] == [
        ("model:tldr-reward-model", 0.5),
        ("trl.rewards:reasoning_accuracy_reward", 1.0),
    ]
    assert cfg.rewards[0].model == "my-org/tldr-reward-model"
    reasons = {k: why for k, _, why in imported.unmapped}
    assert set(reasons) == {"load_in_4bit", "dataset_streaming"}
    assert "use_peft" in reasons["load_in_4bit"]  # 4-bit weights train only through LoRA


def test_cli_import_writes_reports_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "imported.yaml"
    assert main(["config", "import", str(RECIPES / "openr1_vllm_zero3.yaml"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    for key in ("callbacks", "benchmarks"):
        assert f"not imported: {key}: " in err
    assert "pinned TRL default: training.num_train_epochs: 3.0" in err
    text = out.read_text()
    assert "# Not imported: no grpolab equivalent" in text and "# benchmarks: [math_500, aime24]" in text
    GRPOConfigLoader(config_path=out)
    assert main(["config", "import", str(RECIPES / "trl_qwen_gsm8k.yaml"), "-o", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (
        main(
            ["config", "import", str(RECIPES / "trl_qwen_gsm8k.yaml"), "-o", str(out), "--force", "--mode", "cluster"]
        )
        == 0
    )
    assert GRPOConfigLoader(config_path=out).mode == "cluster"
    # Without -o: the config on stdout, the report on stderr.
    capsys.readouterr()
    assert main(["config", "import", str(RECIPES / "trl_qwen_gsm8k.yaml")]) == 0
    captured = capsys.readouterr()
    assert to_plain(parse_yaml_text(captured.out, "stdout"), "stdout")["mode"] == "local"
    assert "not imported: run_name" in captured.err


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "model_name_or_path: x\nreward_funcs: [accuracy_reward]\nreward_weights: [1.0, 2.0]\n",
            "reward_weights: has 2 weights for 1 rewards",
        ),
        ("model_name_or_path: x\nenv: [A, B]\n", "env: must be a mapping"),
        ("model_name_or_path: x\nloss_type: grpoo\n", "recipe.yaml:2: loss_type (-> grpo.loss_type): "),
        ("model_name_or_path: x\nlearning_rate: fast\n", "recipe.yaml:2: learning_rate (-> training.learning_rate)"),
        ("model_name_or_path: x\ndtype: float8\n", "recipe.yaml:2: dtype (-> model.dtype)"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("model_name_or_path: [x\n", "YAML error"),
    ],
)
def test_bad_recipes_exit_2_with_a_clear_message(tmp_path, capsys, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError):
        import_recipe(recipe)
    assert main(["config", "import", str(recipe), "-o", str(tmp_path / "out.yaml")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.yaml").exists()
    assert main(["config", "import", str(tmp_path / "missing.yaml")]) == 2
