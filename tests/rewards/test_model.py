"""Reward models (`rewards: - model: PATH`): a tiny random-init sequence classifier built here,
scored as TRL scores one (prompt + completion, chat-templated for messages, right-padded,
logits[:, 0]), with batch_size and device honoured; the plan says an extra model is loaded."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import CHAT_TEMPLATE, make_char_tokenizer

from grpolab.config import ConfigError
from grpolab.config.schema import RewardSpec
from grpolab.rewards.build import build_rewards


def build_reward_model(out, chat_template=None, seed=1):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = make_char_tokenizer(chat_template)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=16, n_layer=1, n_head=2, num_labels=1, pad_token_id=0
    )
    GPT2ForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    return build_reward_model(tmp_path_factory.mktemp("rm"), CHAT_TEMPLATE)


def trl_scores(path, texts):
    """TRL's reward-model scoring (GRPOTrainer._calculate_rewards), written out."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    model.config.pad_token_id = tok.pad_token_id
    enc = tok(text=texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    with torch.inference_mode():
        return model(**enc).logits[:, 0].tolist()


def test_scores_equal_trls_and_do_not_depend_on_batch_size(reward_model):
    prompts, completions = ["12+34=", "5+5=", "1+1="], ["46", "10 apples", "3"]
    whole = build_rewards([RewardSpec(model=reward_model)], 8)[0][0](prompts, completions)
    chunked = build_rewards([RewardSpec(model=reward_model, batch_size=1)], 8)[0][0](prompts, completions)
    expected = trl_scores(reward_model, [p + c for p, c in zip(prompts, completions)])
    assert whole == pytest.approx(expected, abs=1e-5) and chunked == pytest.approx(expected, abs=1e-5)
    assert len(set(round(v, 6) for v in whole)) == 3  # the texts get different scores


def test_chat_prompts_are_scored_through_the_chat_template(reward_model):
    reward = build_rewards([RewardSpec(model=reward_model, device="cpu", dtype="float32")], 8)[0][0]
    prompt = [{"role": "user", "content": "1+1="}]
    completion = [{"role": "assistant", "content": "2"}]
    text = make_char_tokenizer(CHAT_TEMPLATE).apply_chat_template(prompt + completion, tokenize=False)
    assert reward([prompt], [completion]) == pytest.approx(trl_scores(reward_model, [text]), abs=1e-5)


def test_chat_prompts_need_a_template(tmp_path):
    path = build_reward_model(tmp_path / "plain")
    reward = build_rewards([RewardSpec(model=path)], 8)[0][0]
    from grpolab.rewards.errors import RewardFunctionError

    with pytest.raises(RewardFunctionError, match="no chat template"):
        reward([[{"role": "user", "content": "hi"}]], [[{"role": "assistant", "content": "yo"}]])


def test_missing_reward_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        build_rewards([RewardSpec(model=str(tmp_path / "nowhere"))], 8)
    assert "rewards[0].model" in str(info.value) and "could not load the reward model" in str(info.value)


@pytest.mark.slow
def test_reward_model_trains_with_weights_and_the_plan_names_it(
    tiny_gpt2, reward_model, fast_config, train, jsonl, tmp_path
):
    config = fast_config(
        tiny_gpt2,
        {
            "rewards": [
                {"name": "numeric_match", "weight": 1.0},
                {"model": reward_model, "weight": 0.5, "batch_size": 1},
            ]
        },
    )
    result = train("--config", config)
    assert result.code == 0, result
    assert "an extra model is loaded (0.01M parameters, cpu)" in result.out
    info = json.loads((result.run_dir / "run_info.json").read_text())
    assert info["trl_args"]["reward_weights"] == [1.0, 0.5]
    rows = [r for r in jsonl(result.run_dir / "metrics.jsonl") if "rewards/rm" in json.dumps(r)]
    assert rows, "TRL logs the reward model's score as rewards/<folder name>/mean"
