"""`--dry-run` scores one real batch of sampled completions with every reward and prints the mean
and spread of each; a reward that cannot score (an unreachable URL, a judge answering garbage)
is a bad spec: exit 2, a message naming the entry, nothing written."""

from __future__ import annotations

import re

from rewards_servers import LocalServer, ModelChatServer


def _count_ones(path, body, headers):
    return 200, {"rewards": [float(str(c).count("1")) for c in body["completions"]]}


def test_dry_run_prints_mean_and_spread_per_reward(tiny_gpt2, fast_config, train, tmp_path):
    reward_file = tmp_path / "my_rewards.py"
    reward_file.write_text("def length(completions, **kw):\n    return [float(len(c)) for c in completions]\n")
    with LocalServer(_count_ones) as server:
        config = fast_config(
            tiny_gpt2,
            {
                "rewards": [
                    {"name": "numeric_match"},
                    {"name": f"{reward_file}:length", "weight": 0.1},
                    {"http": {"url": server.url + "/score"}, "weight": 0.5},
                ],
                "generation": {"max_completion_length": 8, "temperature": 1.5},
                "grpo": {"num_generations": 4, "generation_batch_size": 4},
                "training": {"per_device_train_batch_size": 4},
            },
        )
        result = train("--config", config, "--dry-run")
    assert result.code == 0, result
    assert "reward check one sampled batch (2 prompts x 4 completions), every reward:" in result.out
    lines = {m.group(1): m for m in re.finditer(r"^  (\S+)\s+x(\S+)\s+mean\s+(\S+)\s+std\s+(\S+)", result.out, re.M)}
    assert set(lines) == {"numeric_match", "length", "http_127.0.0.1_" + server.url.rsplit(":", 1)[1]}
    assert float(lines["length"].group(3)) > 0  # the real completions were scored
    assert len(server.requests) >= 1 and len(server.requests[0][1]["completions"]) >= 1
    assert "HTTP service " + server.url in result.out
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_unreachable_url_in_dry_run_exits_2_naming_the_entry(tiny_gpt2, fast_config, train, tmp_path):
    with LocalServer(_count_ones) as server:
        url = server.url  # closed once the block ends
    config = fast_config(
        tiny_gpt2, {"rewards": [{"name": "numeric_match"}, {"http": {"url": url, "retries": 0, "timeout_s": 2}}]}
    )
    result = train("--config", config, "--dry-run")
    assert result.code == 2, result
    assert "rewards[1]: failed on a sampled batch in the dry run" in result.err and url in result.err
    assert "could not connect" in result.err
    assert not (tmp_path / "runs").exists()


def test_judge_answering_garbage_in_dry_run_exits_2(tiny_gpt2, fast_config, train, tmp_path):
    from grpolab.demo import demo_model_path

    with ModelChatServer(str(demo_model_path(quiet=True))) as server:
        config = fast_config(
            tiny_gpt2,
            {
                "rewards": [
                    {
                        "judge": {
                            "base_url": server.url + "/v1",
                            "model": "tiny-judge",
                            "rubric": "{prompt}",  # the demo model answers the sum, not yes or no
                            "parse": "yes_no",
                        }
                    }
                ]
            },
        )
        result = train("--config", config, "--dry-run")
    assert result.code == 2, result
    assert "rewards[0]: failed on a sampled batch" in result.err and "which is not yes or no" in result.err
    assert server.answers, "the judge model was asked"
    assert not (tmp_path / "runs").exists()
