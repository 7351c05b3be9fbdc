"""The HTTP reward against a real scoring service on 127.0.0.1: the documented protocol, retries
with backoff, and every way a service can go wrong (slow, 500, wrong length, non-numbers,
non-JSON, unreachable) ends in an error naming the URL and a sample, never a hang."""

from __future__ import annotations

import time

import pytest
from rewards_servers import LocalServer, slow

from grpolab.config import ConfigError
from grpolab.config.schema import RewardSpec
from grpolab.rewards.build import build_rewards
from grpolab.rewards.errors import RewardFunctionError

PROMPTS = ["1+1=", "2+2=", "3+3=", "4+4="]
COMPLETIONS = ["2", "5", "6", "x"]
ANSWERS = ["2", "4", "6", "8"]


def correct(path, body, headers):
    """A scoring service: 1.0 when the completion equals the `answer` column."""
    cols = body["columns"]
    return 200, {"rewards": [float(c == a) for c, a in zip(body["completions"], cols["answer"])]}


def http_reward(url, **options):
    funcs, needs = build_rewards([RewardSpec(http={"url": url, **options})], 8)
    return funcs[0], needs


def test_protocol_prompts_completions_columns_and_concurrency():
    with LocalServer(correct) as server:
        reward, needs = http_reward(server.url + "/score", concurrency=2)
        assert reward(PROMPTS, COMPLETIONS, answer=ANSWERS, trainer_state=object()) == [1.0, 0.0, 1.0, 0.0]
    assert needs == {f"http:{server.url}/score": []}
    assert reward.__name__.startswith("http_127.0.0.1")
    # The batch was split between 2 requests, each with aligned slices of every list.
    bodies = sorted((b for _, b, _ in server.requests), key=lambda b: b["prompts"][0])
    assert [b["prompts"] for b in bodies] == [PROMPTS[:2], PROMPTS[2:]]
    assert bodies[1]["completions"] == COMPLETIONS[2:] and bodies[1]["columns"] == {"answer": ANSWERS[2:]}
    assert all(path == "/score" for path, _, _ in server.requests)


def test_bare_list_answer_and_null_skips():
    with LocalServer(lambda p, b, h: (200, [None, 0.5])) as server:
        reward, _ = http_reward(server.url, concurrency=1)  # one request for the batch
        assert reward(PROMPTS[:2], COMPLETIONS[:2]) == [None, 0.5]


def test_headers_from_environment(monkeypatch):
    monkeypatch.setenv("SCORER_TOKEN", "s3cret")
    with LocalServer(correct) as server:
        reward, _ = http_reward(server.url, headers_env={"Authorization": "SCORER_TOKEN"})
        reward(PROMPTS[:1], COMPLETIONS[:1], answer=ANSWERS[:1])
    assert server.requests[0][2]["authorization"] == "s3cret"


def test_missing_header_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_TOKEN_VAR not set") as info:
        http_reward("http://127.0.0.1:9/x", headers_env={"X-Key": "NO_SUCH_TOKEN_VAR"})
    assert "rewards[0].http.headers_env" in str(info.value)


def test_slow_answer_times_out_naming_url_and_sample():
    with LocalServer(slow(3.0, correct)) as server:
        reward, _ = http_reward(server.url, timeout_s=0.3, retries=1)
        started = time.monotonic()
        with pytest.raises(RewardFunctionError) as info:
            reward(PROMPTS[:2], COMPLETIONS[:2], answer=ANSWERS[:2])
        elapsed = time.monotonic() - started
    message = str(info.value)
    assert server.url in message and "no answer within timeout_s=0.3 s (2 attempts)" in message
    assert "'prompt': '1+1='" in message and "'answer': '2'" in message
    assert elapsed < 2.5  # 2 x 0.3 s + 0.5 s backoff, never the server's 3 s


def test_500_is_retried_with_backoff_then_fails():
    with LocalServer(lambda p, b, h: (500, {"error": "boom"})) as server:
        reward, _ = http_reward(server.url, retries=2)
        started = time.monotonic()
        with pytest.raises(RewardFunctionError, match=r"HTTP 500.*boom.*\(3 attempts\)"):
            reward(PROMPTS[:1], COMPLETIONS[:1])
        assert time.monotonic() - started >= 0.5 + 1.0  # backoff 0.5 s, then 1 s
    assert len(server.requests) == 3


def test_a_500_then_success_recovers():
    calls = []

    def flaky(path, body, headers):
        calls.append(1)
        return (503, {"error": "warming up"}) if len(calls) == 1 else correct(path, body, headers)

    with LocalServer(flaky) as server:
        reward, _ = http_reward(server.url, retries=1, concurrency=1)
        assert reward(PROMPTS[:2], COMPLETIONS[:2], answer=ANSWERS[:2]) == [1.0, 0.0]
    assert len(calls) == 2


def test_4xx_is_not_retried():
    with LocalServer(lambda p, b, h: (400, {"error": "bad request"})) as server:
        reward, _ = http_reward(server.url, retries=3)
        with pytest.raises(RewardFunctionError, match="HTTP 400"):
            reward(PROMPTS[:1], COMPLETIONS[:1])
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "payload, expected",
    [
        ({"rewards": [1.0]}, "answered 1 rewards for 2 completions"),
        ({"rewards": [1.0, "high"]}, "answered non-numbers, e.g. 'high'"),
        ({"rewards": [1.0, True]}, "answered non-numbers, e.g. True"),
        ({"score": 1}, 'expected {"rewards"'),
        (b"<html>oops</html>", "answered non-JSON"),
    ],
)
def test_malformed_answers_name_the_url_and_sample(payload, expected):
    with LocalServer(lambda p, b, h: (200, payload)) as server:
        reward, _ = http_reward(server.url, retries=0, concurrency=1)
        with pytest.raises(RewardFunctionError) as info:
            reward(PROMPTS[:2], COMPLETIONS[:2], answer=ANSWERS[:2])
    message = str(info.value)
    assert expected in message and server.url in message and "on sample {'prompt': '1+1='" in message


def test_infinite_reward_is_rejected_by_the_shape_check():
    with LocalServer(lambda p, b, h: (200, b'{"rewards": [Infinity, 0]}')) as server:
        reward, _ = http_reward(server.url, concurrency=1)
        with pytest.raises(RewardFunctionError, match="returned inf for completion 0; rewards must be finite"):
            reward(PROMPTS[:2], COMPLETIONS[:2])


def test_unreachable_url_fails_fast():
    with LocalServer(correct) as server:
        url = server.url  # a port that was listening a moment ago and now is closed
    reward, _ = http_reward(url, retries=1, timeout_s=1)
    started = time.monotonic()
    with pytest.raises(RewardFunctionError, match="could not connect.*2 attempts"):
        reward(PROMPTS[:1], COMPLETIONS[:1])
    assert time.monotonic() - started < 5


def test_url_must_be_http():
    with pytest.raises(ValueError, match="not an http"):
        RewardSpec(http={"url": "ftp://example.com/score"})


@pytest.mark.slow
def test_http_reward_in_a_training_run(tiny_gpt2, fast_config, train, jsonl):
    with LocalServer(lambda p, b, h: (200, {"rewards": [float(len(str(c))) for c in b["completions"]]})) as server:
        config = fast_config(
            tiny_gpt2, {"rewards": [{"name": "numeric_match"}, {"http": {"url": server.url}, "weight": 0.5}]}
        )
        result = train("--config", config)
    assert result.code == 0, result
    port = server.url.rsplit(":", 1)[1]
    rows = [r for r in jsonl(result.run_dir / "metrics.jsonl") if f"rewards/http_127.0.0.1_{port}/mean" in r]
    assert len(rows) == 2  # TRL called the service at both steps and logged its scores
    assert all("answer" in body["columns"] for _, body, _ in server.requests)
