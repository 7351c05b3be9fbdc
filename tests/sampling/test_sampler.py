"""grpolab/sampling/sampler.py is the one generate-and-score path: held-out evaluation, `grpolab probe`
and the dry run's reward preview all call it, and a sampling setting (top_k above all) means what
it means in TRL's trainer, everywhere."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grpolab.config import GRPOConfigLoader
from grpolab.sampling import sampler
from grpolab.sampling.sampler import Sampling, sample, sample_and_score, trim

EOS, PAD = 0, 1


class ScriptedModel(torch.nn.Module):
    """Stands in for a causal LM: appends `script[i]` to the i-th sequence (prompt x sample), then
    pads; records each generate() call's keyword arguments."""

    def __init__(self, script: list[list[int]]):
        super().__init__()
        self.script, self.calls, self.drawn = script, [], 0

    @property
    def device(self):
        return torch.device("cpu")

    def generate(self, input_ids, attention_mask, max_new_tokens, num_return_sequences, **kwargs):
        assert not self.training and not torch.is_grad_enabled()
        assert all(mask[-1] == 1 for mask in attention_mask), "prompts must be left-padded"
        self.calls.append({"max_new_tokens": max_new_tokens, **kwargs})
        out = []
        for ids in input_ids.repeat_interleave(num_return_sequences, dim=0):
            new = (self.script[self.drawn] + [PAD] * max_new_tokens)[:max_new_tokens]
            self.drawn += 1
            out.append(torch.cat([ids, torch.tensor(new)]))
        return torch.stack(out)


class CharTokenizer:
    """Digits are their own ids + 2; EOS 0, PAD 1; a chat template that tags the user turn."""

    eos_token_id, pad_token_id = EOS, PAD

    def __call__(self, texts, return_tensors, padding, padding_side, add_special_tokens):
        assert padding_side == "left" and not add_special_tokens
        ids = [[int(ch) + 2 for ch in text if ch.isdigit()] for text in texts]
        width = max(map(len, ids))
        return {
            "input_ids": torch.tensor([[PAD] * (width - len(i)) + i for i in ids]),
            "attention_mask": torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids]),
        }

    def decode(self, ids, skip_special_tokens):
        return "".join(str(i - 2) for i in ids if i > 1)

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return "9" + messages[-1]["content"]


def test_completions_are_cut_at_the_first_end_token_and_counted_as_trl_counts():
    model = ScriptedModel([[5, 6, EOS, 7], [5, 6, 7, 8], [EOS], [3, PAD]])
    drawn = sample(model, CharTokenizer(), ["12", "3"], Sampling(4, samples=2, batch_size=1)).groups
    assert [[c.text for c in g] for g in drawn] == [["34", "3456"], ["", "1"]]
    assert [[c.length for c in g] for g in drawn] == [[3, 4], [1, 1]]  # the end token counts
    assert [[c.truncated for c in g] for g in drawn] == [[False, True], [False, True]]
    assert len(model.calls) == 2 and model.training  # batched by prompts; training mode restored


def test_chat_prompts_go_through_the_template_and_come_back_as_messages():
    model = ScriptedModel([[4, EOS]])
    rows = [{"prompt": [{"role": "user", "content": "12"}], "answer": "2"}]
    seen = {}

    def reward(prompts, completions, completion_ids, answer, **kwargs):
        seen.update(prompts=prompts, completions=completions, ids=completion_ids, answer=answer)
        return [1.0]

    scored = sample_and_score(model, CharTokenizer(), rows, Sampling(4), [reward, None])
    assert seen["completions"] == [[{"role": "assistant", "content": "2"}]]
    assert seen["ids"] == [[4]] and seen["answer"] == ["2"] and seen["prompts"] == [rows[0]["prompt"]]
    assert scored.values == [[1.0], None] and scored.weighted_total([2.0, 5.0]) == [2.0]


def test_a_tolerated_reward_error_is_recorded_and_the_others_still_score():
    def broken(**kwargs):
        raise KeyError("service down")

    scored = sample_and_score(
        ScriptedModel([[4, EOS]]),
        CharTokenizer(),
        [{"prompt": "1"}],
        Sampling(4),
        [broken, lambda **kw: [0.5]],
        (KeyError,),
    )
    assert list(scored.errors) == [0] and scored.values == [None, [0.5]]
    with pytest.raises(KeyError):
        sample_and_score(ScriptedModel([[4, EOS]]), CharTokenizer(), [{"prompt": "1"}], Sampling(4), [broken])


@given(ids=st.lists(st.integers(0, 5), max_size=8))
def test_trim_keeps_what_precedes_the_first_end_token(ids):
    kept, ended = trim(ids, EOS, PAD)
    assert ended is (EOS in ids)
    if ended:
        assert kept == ids[: ids.index(EOS)]
    else:  # only trailing padding dropped
        assert ids[: len(kept)] == kept and set(ids[len(kept) :]) <= {PAD} and kept[-1:] != [PAD]


@settings(max_examples=20, deadline=None)
@given(top_k=st.integers(0, 100), top_p=st.sampled_from([0.5, 0.9, 1.0]), greedy=st.booleans())
def test_top_k_reaches_generate_as_the_config_says_and_as_trl_passes_it(top_k, top_p, greedy):
    loader = GRPOConfigLoader(overrides={"generation.top_k": top_k, "generation.top_p": top_p})
    s = Sampling.as_training(loader.config.generation, 2, greedy=greedy)
    kwargs = s.generate_kwargs(CharTokenizer())
    if greedy:
        assert kwargs["do_sample"] is False and "top_k" not in kwargs
    else:
        trl = loader.trl_kwargs(facts=_cpu())
        assert (kwargs["top_k"], kwargs["top_p"]) == (trl["top_k"], trl["top_p"]) == (top_k, top_p)


def _cpu():
    from grpolab.runtime.hardware import HardwareFacts

    return HardwareFacts()


# ----------------------------------------------------------------------------- one sampler for all three
@pytest.fixture
def spy(monkeypatch):
    """Records every call of the one sampler (caller's Sampling) and lets it run."""
    calls: list[Sampling] = []
    real = sampler.sample_and_score

    def recording(model, tokenizer, rows, s, reward_funcs, tolerate=()):
        calls.append(s)
        return real(model, tokenizer, rows, s, reward_funcs, tolerate)

    monkeypatch.setattr(sampler, "sample_and_score", recording)
    return calls


def test_eval_probe_and_preview_all_go_through_the_one_sampler(spy, tiny_gpt2, write_config, tmp_path):
    from datasets import Dataset

    from grpolab.rewards.build import build_rewards
    from grpolab.train import model as models
    from grpolab.train.evaluate import EvalSettings, Evaluator
    from grpolab.train.preview import dry_run_checks
    from grpolab.train.probe import run_probe

    config = write_config(
        {
            "mode": "local",
            "model": {"name_or_path": tiny_gpt2},
            "data": {"dataset": "builtin:addition"},
            "rewards": [{"name": "numeric_match"}],
            "grpo": {"num_generations": 2, "generation_batch_size": 2},
            "training": {"per_device_train_batch_size": 2},
            "generation": {"max_completion_length": 4, "top_k": 7},
            "logging": {"report_to": ["none"]},
        }
    )
    loader = GRPOConfigLoader(config_path=config)
    cfg = loader.config
    tokenizer = models.load_tokenizer(tiny_gpt2, cfg.model)
    model = models.load_model(tiny_gpt2, cfg.model, "float32")
    funcs, _ = build_rewards(cfg.rewards, 4)
    rows = [{"prompt": "12+34=", "answer": "46"}, {"prompt": "5+5=", "answer": "10"}]

    scores = Evaluator(
        rows, tokenizer, funcs, ["numeric_match"], [1.0], EvalSettings(2, 1.0, 4, 8, "numeric_match", 1.0)
    )(model)
    assert "eval/pass@2" in scores
    run_probe(loader, prompts=2, seed=0)
    dry_run_checks(cfg, model, tokenizer, funcs, SimpleNamespace(train_set=Dataset.from_list(rows)))

    assert len(spy) == 3  # evaluation, probe, preview, in that order
    evaluation, probing, preview = (s.generate_kwargs(tokenizer) for s in spy)
    assert evaluation["top_k"] == 0  # eval samples at its own temperature with top-k off, explicitly
    assert probing["top_k"] == preview["top_k"] == 7 == loader.trl_kwargs(facts=_cpu())["top_k"]
