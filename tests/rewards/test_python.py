"""Rewards: the built-ins as pure functions, loading user rewards, the failure wrapper, and an
end-to-end run with every reward kind and weights."""

from __future__ import annotations

import json
import uuid

import pytest

from grpolab.config import ConfigError
from grpolab.config.schema import RewardSpec
from grpolab.rewards import build, builtin, errors, wrap
from grpolab.rewards.python import load_python_reward, required_columns

CHAT = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731


# --------------------------------------------------------------------------- built-ins
def test_exact_match():
    completions = ["46", "  46\n", "<think>4+6</think><answer> 46 </answer>", "47", "460", CHAT("46")]
    assert builtin.exact_match(completions, answer=["46"] * 6) == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert builtin.exact_match(["7"], answer=[7]) == [1.0]  # non-string answers are compared as text


def test_numeric_match():
    completions = [
        "The sum is 46.",
        "46.0",
        "-3 apples",
        "no number here",
        "x<answer>12</answer> 46",
        "4 6",
        CHAT("about 46!"),
    ]
    answers = ["46", "46", "-3", "46", "12", "46", "46"]
    assert builtin.numeric_match(completions, answer=answers) == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert builtin.numeric_match(["46"], answer=["forty-six"]) == [0.0]  # an answer without a number never matches


def test_format_default_and_custom_pattern():
    good = "<think>a+b</think>\n<answer>3</answer>"
    assert builtin.format_reward([good, "3", "<answer>3</answer>", CHAT(good)]) == [1.0, 0.0, 0.0, 1.0]
    # A custom pattern must match the whole (stripped) completion.
    assert builtin.format_reward(["123", " 123 ", "12a", ""], pattern=r"\d+") == [1.0, 1.0, 0.0, 0.0]


def test_length_penalty_soft_overlong():
    # max_length 10, soft cache 4: 0 up to 6 tokens, then linearly down to -1 at 10, -1 beyond.
    ids = [[0] * n for n in (3, 6, 8, 10, 12)]
    assert builtin.length_penalty([""] * 5, completion_ids=ids, max_length=10, soft_cache=4) == [
        0.0,
        0.0,
        -0.5,
        -1.0,
        -1.0,
    ]
    # Without completion_ids it counts characters; the default cache is max_length // 4.
    assert builtin.length_penalty(["a" * 7, "a" * 2], max_length=8) == [-1.0 * (7 - 6) / 2, 0.0]


def test_builtin_columns_and_user_columns():
    assert build.BUILTIN_COLUMNS["numeric_match"] == ["answer"]
    assert build.BUILTIN_COLUMNS["format"] == []

    def user(prompts, completions, answer, difficulty=1, completion_ids=None, **kwargs):
        return [0.0] * len(completions)

    assert required_columns(user, {}) == ["answer"]


# --------------------------------------------------------------------------- loading user rewards
def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_load_reward_by_module_and_by_file(tmp_path, monkeypatch):
    module = _unique("user_rewards")
    (tmp_path / f"{module}.py").write_text("def shout(completions, **kw):\n    return [1.0 for _ in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_python_reward(f"{module}:shout", "rewards[0].name", {})[0](["a"]) == [1.0]

    path = tmp_path / "sub" / "my_reward.py"
    path.parent.mkdir()
    path.write_text("def two(completions, **kw):\n    return [2.0 for _ in completions]\n")
    assert load_python_reward(f"{path}:two", "rewards[0].name", {})[0](["a", "b"]) == [2.0, 2.0]
    monkeypatch.chdir(tmp_path)  # relative paths work from the current directory
    assert load_python_reward("sub/my_reward.py:two", "rewards[0].name", {})[0](["a"]) == [2.0]


@pytest.mark.parametrize("kind", ["bad module", "missing function", "missing file", "module fails on import"])
def test_reward_that_does_not_import_is_named(kind, tmp_path, monkeypatch):
    module = _unique("rewards_mod")
    (tmp_path / f"{module}.py").write_text("def present(completions, **kw):\n    return [0.0] * len(completions)\n")
    (tmp_path / "broken.py").write_text("import no_such_package_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec, expected = {
        "bad module": (
            "no_such_module_xyz:fn",
            ["no_such_module_xyz:fn", "could not be imported", "ModuleNotFoundError"],
        ),
        "missing function": (f"{module}:absent", [module, "no function `absent`", "present"]),
        "missing file": (f"{tmp_path}/nowhere.py:fn", ["nowhere.py", "not found"]),
        "module fails on import": (f"{tmp_path}/broken.py:fn", ["broken.py:fn", "no_such_package_xyz"]),
    }[kind]
    with pytest.raises(ConfigError) as info:
        build.build_rewards([RewardSpec(name=spec)], 8)
    message = str(info.value)
    for part in expected:
        assert part in message, message
    assert "rewards[0].name" in message


def test_build_rewards_reports_every_bad_reward_at_once():
    specs = [RewardSpec(name="numeric_match"), RewardSpec(name="nope_a:f"), RewardSpec(name="nope_b:g")]
    with pytest.raises(ConfigError) as info:
        build.build_rewards(specs, 8)
    assert "nope_a:f" in str(info.value) and "nope_b:g" in str(info.value)
    assert "rewards[1].name" in str(info.value) and "rewards[2].name" in str(info.value)


def test_build_rewards_labels_kwargs_and_needs(tmp_path):
    path = tmp_path / "r.py"
    path.write_text(
        "def score(completions, answer, **kw):\n    return [float(c == a) for c, a in zip(completions, answer)]\n"
    )
    specs = [
        RewardSpec(name="format", kwargs={"pattern": r"\d+"}),
        RewardSpec(name="length_penalty"),
        RewardSpec(name=f"{path}:score"),
        RewardSpec(name=f"{path}:score", weight=2.0),
    ]
    funcs, needs = build.build_rewards(specs, max_completion_length=8)
    assert [f.__name__ for f in funcs] == ["format", "length_penalty", "score", "score_3"]  # metric names, unique
    assert funcs[0](["p"], ["12"]) == [1.0]  # the pattern kwarg is bound
    assert funcs[1](["p"], ["x"], completion_ids=[[0] * 8]) == [-1.0]  # max_length defaults to max_completion_length
    assert funcs[2](["p", "p"], ["4", "5"], answer=["4", "4"]) == [1.0, 0.0]
    assert needs[f"{path}:score"] == ["answer"] and needs["format"] == []


# --------------------------------------------------------------------------- the failure wrapper
def test_wrapper_names_the_function_and_the_failing_sample():
    def picky(completions, answer, **kwargs):
        return [1.0 / int(a) for a in answer]  # ZeroDivisionError on answer "0"

    reward = wrap.make_reward("my_mod:picky", picky, {}, "picky")
    with pytest.raises(errors.RewardFunctionError) as info:
        reward(["1+1=", "0+0=", "2+2="], ["2", "0", "4"], answer=["2", "0", "4"])
    message = str(info.value)
    assert "my_mod:picky" in message and "ZeroDivisionError" in message
    # The sample shown is the one that fails (index 1), not the first of the batch.
    assert "'prompt': '0+0='" in message and "'answer': '0'" in message and "'completion': '0'" in message


@pytest.mark.parametrize(
    "returned, expected",
    [
        (lambda n: None, "returned None"),
        (lambda n: [0.0] * (n - 1), "returned 1 values for 2 completions"),
        (lambda n: [0.0, float("nan")], "returned nan for completion 1"),
        (lambda n: [0.0, "1"], "returned '1' for completion 1"),
    ],
)
def test_wrapper_rejects_unusable_values(returned, expected):
    reward = wrap.make_reward("m:f", lambda completions, **kw: returned(len(completions)), {}, "f")
    with pytest.raises(errors.RewardFunctionError, match="reward `m:f` " + expected.split(" ", 1)[0]) as info:
        reward(["a", "b"], ["x", "y"])
    assert expected in str(info.value)


def test_wrapper_accepts_numpy_values():
    import numpy as np

    reward = wrap.make_reward("m:np", lambda completions, **kw: np.array([0.5, 1], dtype=np.float32), {}, "np")
    assert [float(v) for v in reward(["a", "b"], ["x", "y"])] == [0.5, 1.0]
    bad = wrap.make_reward(
        "m:np_nan", lambda completions, **kw: np.array([0.5, np.nan], dtype=np.float32), {}, "np_nan"
    )
    with pytest.raises(errors.RewardFunctionError, match="returned np.float32\\(nan\\) for completion 1"):
        bad(["a", "b"], ["x", "y"])


def test_wrapper_passes_none_and_prompts_through():
    seen = {}

    def with_prompts(prompts, completions, **kwargs):
        seen["prompts"] = prompts
        return [None, 1]

    reward = wrap.make_reward("m:with_prompts", with_prompts, {}, "with_prompts")
    assert reward(["p1", "p2"], ["a", "b"]) == [None, 1]
    assert seen["prompts"] == ["p1", "p2"]


# --------------------------------------------------------------------------- end to end
def test_every_reward_kind_with_weights_end_to_end(tiny_gpt2, tmp_path, monkeypatch, fast_config, train, jsonl):
    module = _unique("e2e_rewards")
    (tmp_path / f"{module}.py").write_text("def const_one(completions, **kw):\n    return [1.0] * len(completions)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reward_file = tmp_path / "file_rewards.py"
    reward_file.write_text(
        "def const_two(prompts, completions, answer, **kw):\n"
        "    assert len(answer) == len(completions)\n"
        "    return [2.0] * len(completions)\n"
    )
    rewards = [
        {"name": "exact_match", "weight": 1.0},
        {"name": "numeric_match", "weight": 1.0},
        {"name": "format", "weight": 1.0, "kwargs": {"pattern": "(?s).*"}},  # matches anything: always 1
        {
            "name": "length_penalty",
            "weight": 1.0,
            "kwargs": {"max_length": 1, "soft_cache": 1},
        },  # >= 1 token: always -1
        {"name": f"{module}:const_one", "weight": 0.5},
        {"name": f"{reward_file}:const_two", "weight": -1.0},
    ]
    result = train("--config", fast_config(tiny_gpt2, {"rewards": rewards}))
    assert result.code == 0, result
    records = [r for r in jsonl(result.run_dir / "metrics.jsonl") if "reward" in r]
    assert len(records) == 2
    weights = {
        "exact_match": 1.0,
        "numeric_match": 1.0,
        "format": 1.0,
        "length_penalty": 1.0,
        "const_one": 0.5,
        "const_two": -1.0,
    }
    for rec in records:
        means = {name: rec[f"rewards/{name}/mean"] for name in weights}
        assert means["format"] == 1.0  # the custom pattern reached the built-in
        assert means["length_penalty"] == -1.0  # so did max_length / soft_cache
        assert means["const_one"] == 1.0 and means["const_two"] == 2.0
        # TRL's reward is the weighted sum: the configured weights reached GRPOConfig.reward_weights.
        assert rec["reward"] == pytest.approx(sum(weights[n] * means[n] for n in weights), abs=1e-5)
    assert "rewards      exact_match x1, numeric_match x1, format x1, length_penalty x1" in result.out
    resolved = (result.run_dir / "resolved_config.yaml").read_text()
    assert "const_two" in resolved and "pattern" in resolved


def test_reward_that_raises_stops_the_run_naming_function_and_sample(tiny_gpt2, tmp_path, fast_config, train):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "answer": "boom"}) + "\n" for i in range(4)))
    reward_file = tmp_path / "fragile.py"
    reward_file.write_text(
        "def fragile(completions, answer, **kw):\n    return [float(int(a)) for a in answer]  # ValueError on 'boom'\n"
    )
    cfg = fast_config(tiny_gpt2, {"data": {"dataset": str(data)}, "rewards": [{"name": f"{reward_file}:fragile"}]})
    result = train("--config", cfg)
    assert result.code == 1, result
    text = result.out + result.err
    assert f"reward `{reward_file}:fragile` raised ValueError: invalid literal for int()" in text, result
    assert "on sample {'prompt': '" in text and "'answer': 'boom'" in text and "'completion': " in text
    info = json.loads((result.run_dir / "run_info.json").read_text())
    assert info["status"] == "failed" and info["exit_code"] == 1 and "fragile" in info["error"]
