"""The LLM-judge reward through the `openai` client against a real local OpenAI-compatible
server whose answers come from a real model (the demo's pretrained addition model: asked
`a+b=`, it answers a number), so the request, the answer and its parsing are all real."""

from __future__ import annotations

import re

import pytest
from rewards_servers import LocalServer, ModelChatServer

from grpolab.config import ConfigError
from grpolab.config.schema import JudgeReward, RewardSpec
from grpolab.rewards.build import build_rewards
from grpolab.rewards.errors import RewardFunctionError


@pytest.fixture(scope="module")
def judge_server():
    from grpolab.demo import demo_model_path

    with ModelChatServer(str(demo_model_path(quiet=True))) as server:
        yield server


def judge(base_url, **options):
    spec = {"base_url": base_url, "model": "tiny-judge", "rubric": "{completion}", **options}
    funcs, _ = build_rewards([RewardSpec(judge=spec)], 8)
    return funcs[0]


def test_regex_score_is_what_the_model_answered(judge_server):
    # The rubric template sends the completion itself; the demo model answers the sum.
    reward = judge(judge_server.url + "/v1", parse="regex", pattern=r"^\s*(\d+)", concurrency=2)
    completions = ["12+34=", "50+41=", "23+23="]
    judge_server.answers.clear()
    scores = reward(["q"] * 3, completions)
    said = dict(judge_server.answers)
    assert set(said) == set(completions)  # one chat request per completion, the rubric filled in
    for c, score in zip(completions, scores):
        digits = said[c].strip()
        assert digits[:2].isdigit(), said  # a real model answering with a number
        assert score == float(re.match(r"\d+", digits).group())
    assert reward.__name__ == "judge_tiny-judge"


def test_score_0_10_rejects_an_answer_out_of_range(judge_server):
    # Two-digit sums are not scores from 0 to 10: a judge not following the rubric is an error.
    reward = judge(judge_server.url + "/v1", parse="score_0_10")
    judge_server.answers.clear()
    with pytest.raises(RewardFunctionError) as info:
        reward(["q"], ["53+46="])
    said = judge_server.answers[0][1]
    assert f"answered {said!r}, which is not a number from 0 to 10 (parse: score_0_10)" in str(info.value)


def test_yes_no_on_a_judge_that_answers_numbers_is_an_error_showing_the_answer(judge_server):
    reward = judge(judge_server.url + "/v1", parse="yes_no")
    with pytest.raises(RewardFunctionError) as info:
        reward(["12+3=?"], ["12+34="], answer=["46"])
    message = str(info.value)
    assert "judge `tiny-judge`" in message and judge_server.url in message
    assert "which is not yes or no (parse: yes_no)" in message
    assert "on sample {'prompt': '12+3=?', 'completion': '12+34=', 'answer': '46'}" in message


def test_rubric_without_placeholders_wraps_prompt_and_response(tmp_path):
    with LocalServer(lambda p, b, h: (200, _chat("Score: 7"))) as server:
        rubric = tmp_path / "rubric.txt"
        rubric.write_text("Grade the helpfulness.")
        funcs, _ = build_rewards(
            [RewardSpec(judge={"base_url": server.url + "/v1", "model": "m", "rubric_file": str(rubric)})], 8
        )
        assert funcs[0](["Why is the sky blue?"], ["Rayleigh scattering."]) == [0.7]
    body = server.requests[0][1]
    content = body["messages"][0]["content"]
    assert content.startswith("Grade the helpfulness.") and "Prompt:\nWhy is the sky blue?" in content
    assert "Response:\nRayleigh scattering." in content and "score from 0 (worst) to 10" in content
    assert body["model"] == "m" and body["temperature"] == 0.0 and server.requests[0][0] == "/v1/chat/completions"


def _chat(text):
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


@pytest.mark.parametrize(
    "parse, answer, expected",
    [
        ("score_0_10", "8", 0.8),
        ("score_0_10", "Score: 10/10", 1.0),
        ("score_0_10", "11", None),
        ("score_0_10", "great", None),
        ("yes_no", "Yes, it is correct.", 1.0),
        ("yes_no", "no", 0.0),
        ("yes_no", "maybe", None),
    ],
)
def test_answer_parsing(parse, answer, expected):
    from grpolab.rewards.judge import JudgeReward as Judge

    reader = Judge(JudgeReward(base_url="http://127.0.0.1:9/v1", model="m", rubric="r", parse=parse), "k")
    assert reader.read(answer) == expected


def test_api_key_from_environment(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-local")
    with LocalServer(lambda p, b, h: (200, _chat("yes"))) as server:
        reward = judge(server.url + "/v1", parse="yes_no", api_key_env="JUDGE_KEY")
        assert reward(["p"], ["c"]) == [1.0]
    assert server.requests[0][2]["authorization"] == "Bearer sk-local"


def test_server_error_and_unreachable_name_the_judge():
    with LocalServer(lambda p, b, h: (500, {"error": {"message": "overloaded"}})) as server:
        reward = judge(server.url + "/v1", retries=0)
        with pytest.raises(RewardFunctionError, match=r"judge `tiny-judge` at .*HTTP 500"):
            reward(["p"], ["c"])
    reward = judge(server.url + "/v1", retries=0, timeout_s=2)
    with pytest.raises(RewardFunctionError, match="could not connect"):
        reward(["p"], ["c"])


def test_bad_judge_specs():
    with pytest.raises(ValueError, match="exactly one of `rubric`"):
        JudgeReward(base_url="http://x/v1", model="m")
    with pytest.raises(ValueError, match="parse: regex needs `pattern`"):
        JudgeReward(base_url="http://x/v1", model="m", rubric="r", parse="regex")
    with pytest.raises(ValueError, match="has no group"):
        JudgeReward(base_url="http://x/v1", model="m", rubric="r", parse="regex", pattern=r"\d")
    with pytest.raises(ConfigError, match="rubric file"):
        build_rewards([RewardSpec(judge={"base_url": "http://x/v1", "model": "m", "rubric_file": "nope.txt"})], 8)


@pytest.mark.slow
def test_judge_reward_in_a_training_run(judge_server, tiny_gpt2, fast_config, train, jsonl):
    judge_spec = {
        "base_url": judge_server.url + "/v1",
        "model": "tiny-judge",
        "rubric": "{prompt}",  # the dataset's "a+b=" prompt: the demo model answers the sum
        "parse": "regex",
        "pattern": r"(\d+)",
    }
    judge_server.answers.clear()
    result = train("--config", fast_config(tiny_gpt2, {"rewards": [{"judge": judge_spec, "weight": 0.01}]}))
    assert result.code == 0, result
    rows = [r for r in jsonl(result.run_dir / "metrics.jsonl") if "rewards/judge_tiny-judge/mean" in r]
    assert len(rows) == 2 and all(r["rewards/judge_tiny-judge/mean"] > 0 for r in rows)
    assert len(judge_server.answers) == 4  # 2 steps x 2 completions, one judge request each
