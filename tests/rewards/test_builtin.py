"""Built-in rewards (math-verify, Open-R1's format and repetition rewards, DAPO's overlong
penalty), TRL's rewards by name, the check every reward answer goes through, and the
`rewards:` schema (one kind per entry, weights summing to a positive number)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.schema import RewardSpec
from grpolab.rewards import build, builtin, errors, wrap
from grpolab.rewards import math as reward_math

CHAT = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731


# --------------------------------------------------------------------------- math-verify
def test_math_verify_compares_mathematically():
    completions = [
        r"so the answer is \boxed{\frac{2}{6}}",
        "<answer>0.5</answer>",
        r"\boxed{3}",
        "I think it is 42",
        CHAT(r"$\boxed{\sqrt{4}}$"),
    ]
    answers = [r"\frac{1}{3}", "1/2", "4", "42", "2"]
    assert reward_math.math_verify(completions, answer=answers) == [1.0, 1.0, 0.0, 1.0, 1.0]


def test_math_verify_skips_unparsable_gold():
    assert reward_math.math_verify(["42"], answer=["no math here"]) == [None]


def test_cosine_length_prefers_short_correct_and_long_wrong():
    short_right, long_right = r"\boxed{1}", "x" * 900 + r" \boxed{1}"
    short_wrong, long_wrong = r"\boxed{2}", "x" * 900 + r" \boxed{2}"
    r = reward_math.cosine_length([short_right, long_right, short_wrong, long_wrong], answer=["1"] * 4, max_len=1000)
    assert r[0] > r[1] > 0 > r[3] > r[2]
    assert r[0] == pytest.approx(1.0, abs=1e-3) and r[2] == pytest.approx(-1.0, abs=1e-3)


def test_kimi_length_rewards_short_correct_answers():
    out = reward_math.kimi_length([r"\boxed{1}", "y" * 50 + r"\boxed{1}", r"\boxed{9}"], answer=["1"] * 3)
    assert out[0] == pytest.approx(0.5) and out[1] == pytest.approx(-0.5) and out[2] == pytest.approx(0.0, abs=0.05)
    assert reward_math.kimi_length(["a", "b"], answer=["1", "1"]) == [0.0, 0.0]  # equal lengths: no length signal


# --------------------------------------------------------------------------- format and repetition
def test_tag_count_gives_partial_credit():
    full = "<think>\nstep\n</think>\n<answer>\n3\n</answer>"
    assert builtin.tag_count([full, "<think>\nstep", "none", full + "\n</answer>"]) == [1.0, 0.25, 0.0, 0.75]


def test_reasoning_steps():
    text = "Step 1: add\nStep 2: carry\nStep 3: done"
    assert builtin.reasoning_steps([text, "First, add. Finally, done.", "just 3"]) == [1.0, pytest.approx(2 / 3), 0.0]


def test_repetition_penalty():
    assert builtin.repetition_penalty(["a b c d e f", "a b c a b c a b c", "a b"], ngram_size=3) == [
        0.0,
        pytest.approx(-(1 - 3 / 7)),
        0.0,
    ]
    with pytest.raises(ValueError, match="must be <= 0"):
        builtin.repetition_penalty(["a b c"], max_penalty=0.5)


# --------------------------------------------------------------------------- TRL's rewards
def test_trl_rewards_by_name_and_factories():
    funcs, needs = build.build_rewards(
        [
            RewardSpec(name="trl:accuracy_reward"),
            RewardSpec(
                name="trl:get_soft_overlong_punishment", kwargs={"max_completion_len": 10, "soft_punish_cache": 4}
            ),
            RewardSpec(name="trl:think_format_reward"),
        ],
        8,
    )
    assert needs["trl:accuracy_reward"] == ["solution"]  # TRL's reward reads `solution`
    assert funcs[0](["q"], [CHAT(r"\boxed{\frac{1}{2}}")], solution=[r"\frac{1}{2}"]) == [1.0]
    assert funcs[1](["q", "q"], ["", ""], completion_ids=[[0] * 5, [0] * 12]) == [0.0, -1.0]
    assert funcs[2](["q"], [CHAT("<think>\nx\n</think>\ny")]) == [1.0]


def test_unknown_trl_reward_lists_what_exists():
    with pytest.raises(ConfigError, match="TRL has no reward `acuracy_reward`.*accuracy_reward"):
        build.build_rewards([RewardSpec(name="trl:acuracy_reward")], 8)


# --------------------------------------------------------------------------- the shape check
def _wrapped(returned):
    return wrap.make_reward("m:f", lambda completions, **kw: returned, {}, "f")


@pytest.mark.parametrize(
    "returned, expected",
    [
        (0.5, "returned 0.5 for 2 completions; it must return a list"),
        (np.float32(0.5), "returned np.float32(0.5) for 2 completions"),
        (torch.tensor(1.0), "returned tensor(1.) for 2 completions"),
        ((x for x in [1.0, 0.0]), "returned a generator; it must return a list"),
        ({"a": 1.0}, "returned {'a': 1.0} for 2 completions"),
        ([1.0, 2.0, 3.0], "returned 3 values for 2 completions"),
        ([1.0, float("inf")], "returned inf for completion 1; rewards must be finite numbers"),
        ([None, None], "returned None for all 2 completions"),
        ([[1.0], [0.0]], "returned [1.0] for completion 0"),
    ],
)
def test_every_bad_return_shape_names_the_reward_and_a_sample(returned, expected):
    with pytest.raises(errors.RewardFunctionError) as info:
        _wrapped(returned)(["p1", "p2"], ["a", "b"])
    message = str(info.value)
    assert "reward `m:f`" in message and expected in message
    assert "on sample {'prompt': 'p" in message or "for 2 completions" in message


def test_numbers_of_every_kind_are_accepted():
    values = [torch.tensor(0.5), np.float64(1.0), np.int64(2), True, 3, None]
    out = _wrapped(values)(["p"] * 6, ["c"] * 6)
    assert out == [0.5, 1.0, 2.0, 1.0, 3.0, None] and all(isinstance(v, float) for v in out if v is not None)
    assert _wrapped(torch.tensor([0.25, 0.75]))(["p", "q"], ["a", "b"]) == [0.25, 0.75]


def test_async_reward_is_awaited():
    async def slow_reward(completions, **kwargs):
        return [1.0] * len(completions)

    assert wrap.make_reward("m:a", slow_reward, {}, "a")(["p"], ["c"]) == [1.0]


def test_extra_columns_do_not_break_a_function_without_kwargs():
    def strict(completions, answer):
        return [float(c == a) for c, a in zip(completions, answer)]

    reward = wrap.make_reward("m:strict", strict, {}, "strict")
    assert reward(["p"], ["4"], answer=["4"], source=["gsm8k"], trainer_state=None) == [1.0]


# --------------------------------------------------------------------------- the schema
def _loader(tmp_path, rewards):
    import json

    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"rewards": rewards}))
    return GRPOConfigLoader(config_path=path)


@pytest.mark.parametrize(
    "rewards, expected",
    [
        ([{"name": "format", "model": "./rm"}], "exactly one of `name`, `model`, `http` or `judge` (got name, model)"),
        ([{"weight": 1.0}], "exactly one of `name`, `model`, `http` or `judge` (got none)"),
        ([{"name": "format", "batch_size": 4}], "batch_size only apply to a reward model"),
        ([{"name": "numeric_macth"}], "Did you mean `numeric_match`"),
        ([{"name": "format", "weight": 1.0}, {"name": "tag_count", "weight": -1.0}], "sum to 0"),
        ([{"name": "format", "weight": -0.5}], "sum to -0.5"),
        ([{"webhook": {"url": "http://x"}}], "webhook"),
        ([{"http": {"url": "http://x"}, "kwargs": {"a": 1}}], "kwargs are arguments of a reward function"),
    ],
)
def test_bad_reward_specs_are_config_errors(tmp_path, rewards, expected):
    with pytest.raises(ConfigError) as info:
        _loader(tmp_path, rewards)
    assert expected in str(info.value)


def test_every_kind_validates_and_maps_its_weight(tmp_path):
    loader = _loader(
        tmp_path,
        [
            {"name": "math_verify", "weight": 1.0},
            {"model": "./rm", "weight": 0.5, "batch_size": 8, "dtype": "bfloat16", "device": "cuda:1"},
            {"http": {"url": "http://127.0.0.1:8000/score", "retries": 1}, "weight": 0.25},
            {"judge": {"base_url": "http://127.0.0.1:8001/v1", "model": "q", "rubric": "r"}, "weight": 0.25},
        ],
    )
    cfg = loader.config
    assert [r.kind for r in cfg.rewards] == ["name", "model", "http", "judge"]
    assert [r.label for r in cfg.rewards] == [
        "math_verify",
        "model:rm",
        "http:http://127.0.0.1:8000/score",
        "judge:q",
    ]
    assert loader.trl_kwargs()["reward_weights"] == [1.0, 0.5, 0.25, 0.25]
    assert math.isclose(sum(r.weight for r in cfg.rewards), 2.0)
