"""Options only the model's config.json can settle are refused before the model loads, as a
config problem with the fix, not as GRPOTrainer's traceback after loading."""

from __future__ import annotations

import json

import pytest
from conftest import PYTHON, REPO_ROOT, child_env

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.train.model import check_model_options


def _config(tmp_path, coef):
    loader = GRPOConfigLoader(mode="local", overrides={"grpo": {"router_aux_loss_coef": coef}})
    return loader.config


@pytest.mark.parametrize("coef", [0.001, 0.5, 1.0])
def test_a_router_loss_on_a_dense_model_names_the_key_and_the_fix(tmp_path, coef):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 64}))
    with pytest.raises(ConfigError) as err:
        check_model_options(_config(tmp_path, coef), str(tmp_path))
    text = str(err.value)
    assert "grpo.router_aux_loss_coef" in text and "not a Mixture-of-Experts" in text
    assert "Fix: remove `grpo.router_aux_loss_coef` (or set it to 0)" in text


@pytest.mark.parametrize("coef", [None, 0.0])
def test_no_router_loss_asks_nothing_of_the_model(tmp_path, coef):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    check_model_options(_config(tmp_path, coef), str(tmp_path))


@pytest.mark.parametrize("nested", [False, True])
def test_a_mixture_of_experts_model_keeps_its_router_loss(tmp_path, nested):
    text = {"model_type": "mixtral", "hidden_size": 8, "output_router_logits": False}
    config = {"model_type": "llava", "text_config": text} if nested else text
    (tmp_path / "config.json").write_text(json.dumps(config))
    check_model_options(_config(tmp_path, 0.01), str(tmp_path))


def test_an_unknown_model_is_left_to_the_loader(tmp_path):
    check_model_options(_config(tmp_path, 0.01), str(tmp_path / "nowhere"))


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("tied, refused", [(True, True), (False, False), (None, False)])
def test_an_fp32_lm_head_cast_needs_an_untied_head(tmp_path, tied, refused, nested):
    text = {"model_type": "gpt2", "n_positions": 64} | ({} if tied is None else {"tie_word_embeddings": tied})
    config = {"model_type": "llava", "text_config": text} if nested else text
    (tmp_path / "config.json").write_text(json.dumps(config))
    cfg = GRPOConfigLoader(mode="local", overrides={"grpo": {"cast_lm_head_to_fp32": True}}).config
    if not refused:  # untied, or a config.json that does not say: left to TRL
        check_model_options(cfg, str(tmp_path))
        return
    with pytest.raises(ConfigError) as err:
        check_model_options(cfg, str(tmp_path))
    text = str(err.value)
    assert "grpo.cast_lm_head_to_fp32" in text and "tie_word_embeddings: true" in text
    assert "Fix: set `grpo.cast_lm_head_to_fp32: false`" in text
    fixed = GRPOConfigLoader(mode="local", overrides={"grpo": {"cast_lm_head_to_fp32": False}}).config
    check_model_options(fixed, str(tmp_path))  # the fix it names passes


@pytest.mark.slow
@pytest.mark.parametrize("key, value", [("grpo.router_aux_loss_coef", "0.01"), ("grpo.cast_lm_head_to_fp32", "true")])
def test_the_cli_refuses_it_before_loading_the_model(tiny_gpt2, tmp_path, key, value):
    import subprocess

    done = subprocess.run(
        [
            PYTHON,
            "-m",
            "grpolab",
            "train",
            "--model",
            str(tiny_gpt2),
            "--output-dir",
            str(tmp_path / "runs"),
            "--set",
            f"{key}={value}",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=child_env(),
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert key in done.stderr and "Traceback" not in done.stderr


# A loaded model's positions are read by the same rule as its config.json on disk (runtime/hub),
# for every family's key, a multimodal model's text part, and none (the tokenizer's limit).
POSITION_CASES = [
    ("gpt2", {"n_positions": 77}, 77),
    ("llama", {"max_position_embeddings": 99}, 99),
    ("qwen2", {"max_position_embeddings": 131}, 131),
    ("llava", {"text_config": {"model_type": "llama", "max_position_embeddings": 55}}, 55),
]


@pytest.mark.parametrize("family, values, positions", POSITION_CASES)
def test_a_loaded_models_positions_agree_with_its_config_json(tmp_path, family, values, positions):
    from types import SimpleNamespace

    from transformers import AutoConfig

    from grpolab.runtime import hub
    from grpolab.train.model import context_length

    config = AutoConfig.for_model(family, **values)
    (tmp_path / "config.json").write_text(config.to_json_string())
    assert context_length(SimpleNamespace(config=config), None) == positions
    assert hub.context_length(hub.model_config(str(tmp_path))) == positions


def test_a_model_without_positions_falls_back_to_the_tokenizer_limit():
    from types import SimpleNamespace

    from transformers import PretrainedConfig

    from grpolab.train.model import context_length

    model = SimpleNamespace(config=PretrainedConfig())
    assert context_length(model, SimpleNamespace(model_max_length=512)) == 512
    assert context_length(model, SimpleNamespace(model_max_length=int(1e30))) is None
