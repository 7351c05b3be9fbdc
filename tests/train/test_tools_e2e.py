"""A tool really called during GRPO training: a tiny model is first taught (a few seconds of
supervised steps, as the demo pretrains for addition) to answer with Qwen2.5's tool-call format,
then trained with `tools: [file.py:add]` and a reward that needs the tool's answer; the tool
runs and its result reaches the completions the reward scores."""

from __future__ import annotations

import json
import string

import pytest

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]
CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 3, "b": 4}}\n</tool_call><|im_end|>'
TOOLS_PY = '''
import json
import os


def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: the first number
        b: the second number
    """
    with open(os.environ["TOOL_LOG"], "a") as f:
        f.write(json.dumps({"a": a, "b": b}) + "\\n")
    return a + b


class CalcEnv:
    """An environment: TRL builds one per rollout, calls reset, offers `add` as a tool, asks get_reward."""

    def reset(self, **kwargs):
        self.result = None

    def add(self, a: int, b: int) -> int:
        """Add two whole numbers.

        Args:
            a: the first number
            b: the second number
        """
        with open(os.environ["TOOL_LOG"], "a") as f:
            f.write(json.dumps({"env": True, "a": a, "b": b}) + "\\n")
        self.result = a + b
        return self.result

    def get_reward(self) -> float:
        return 1.0 if self.result == 7 else 0.0


def tool_answer(completions, **kwargs):
    """1.0 when a tool message in the completion carries the sum 7 (only the tool computes it)."""
    seen = [[m for m in c if m.get("role") == "tool"] for c in completions]
    with open(os.environ["TOOL_LOG"] + ".completions", "a") as f:
        f.write(json.dumps(completions) + "\\n")
    return [float(any(str(m.get("content")).strip() == "7" for m in tools)) for tools in seen]
'''


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen2_5_chat_template

    vocab = {t: i for i, t in enumerate(SPECIAL)}
    for ch in string.printable:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL[0]))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token=SPECIAL[0], additional_special_tokens=SPECIAL[3:]
    )
    fast.chat_template = qwen2_5_chat_template  # a template TRL knows how to parse tool calls from
    return fast


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory):
    """A tiny Llama that answers every arithmetic question with a call of `add(3, 4)`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tool_model")
    tok = _tokenizer()

    def add(a: int, b: int) -> int:
        """Add two whole numbers.

        Args:
            a: the first number
            b: the second number
        """
        return a + b

    messages = [{"role": "user", "content": "What is 3+4?"}]
    prefix = tok.apply_chat_template(messages, tools=[add], tokenize=False, add_generation_prompt=True)
    p_ids, t_ids = tok(prefix, add_special_tokens=False)["input_ids"], tok(CALL, add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    ids = torch.tensor([p_ids + t_ids])
    labels = torch.tensor([[-100] * len(p_ids) + t_ids])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.02:
            break
    assert loss.item() < 0.1, f"the tool-call format was not learnt (loss {loss.item():.3f})"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.mark.slow
def test_a_tool_is_called_during_training_and_its_result_reaches_the_completion(
    tool_model, fast_config, train, tmp_path, monkeypatch, jsonl
):
    (tmp_path / "calc_tools.py").write_text(TOOLS_PY)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("TOOL_LOG", str(log))
    data = tmp_path / "questions.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": [{"role": "user", "content": f"What is {a}+{b}?"}]}) + "\n" for a, b in [(3, 4)] * 8
        )
    )
    config = fast_config(
        tool_model,
        {
            "data": {"dataset": str(data)},
            "tools": [f"{tmp_path}/calc_tools.py:add"],
            "rewards": [{"name": f"{tmp_path}/calc_tools.py:tool_answer"}],
            "generation": {"max_completion_length": 200, "temperature": 0.3},
        },
    )
    dry = train("--config", config, "--dry-run")
    assert dry.code == 0, dry
    assert f"tools        {tmp_path}/calc_tools.py:add (checked" in dry.out
    log.unlink(missing_ok=True)
    result = train("--config", config)
    assert result.code == 0, result
    calls = jsonl(log)
    assert calls and calls[0] == {"a": 3, "b": 4}  # TRL parsed the model's call and ran the tool
    rows = jsonl(result.run_dir / "metrics.jsonl")
    assert any(row.get("tools/call_frequency", 0) > 0 for row in rows)
    assert any(row.get("rewards/tool_answer/mean", 0) > 0 for row in rows)  # the tool's 7 reached the reward


@pytest.mark.slow
def test_an_environment_provides_the_tool_and_the_reward(tool_model, fast_config, train, tmp_path, monkeypatch, jsonl):
    (tmp_path / "calc_tools.py").write_text(TOOLS_PY)
    log = tmp_path / "env_calls.jsonl"
    monkeypatch.setenv("TOOL_LOG", str(log))
    data = tmp_path / "questions.jsonl"
    data.write_text(json.dumps({"prompt": [{"role": "user", "content": "What is 3+4?"}]}) + "\n")
    config = fast_config(
        tool_model,
        {
            "data": {"dataset": str(data), "max_samples": None},
            "environment": f"{tmp_path}/calc_tools.py:CalcEnv",
            "rewards": [{"name": f"{tmp_path}/calc_tools.py:tool_answer", "weight": 0.5}],
            "generation": {"max_completion_length": 200, "temperature": 0.3},
            "training": {"max_steps": 1},
        },
    )
    result = train("--config", config)
    assert result.code == 0, result
    assert jsonl(log)[0] == {"env": True, "a": 3, "b": 4}  # the environment's method ran as the tool
    rows = jsonl(result.run_dir / "metrics.jsonl")
    assert any(row.get("rewards/CalcEnv/mean", 0) == 1.0 for row in rows)  # its get_reward, an extra reward
