"""probe on a tiny random-init model: the report's numbers follow from the sampled groups, the filtered
dataset holds exactly the mixed prompts, and bad output paths are usage errors. (Probe against the first
training steps of the demo is in test_tune_runs.py.)"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import PYTHON, REPO_ROOT, child_env

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.train import probe


@pytest.fixture
def probe_config(tmp_path, write_config, tiny_gpt2):
    rewards = tmp_path / "coin.py"
    # a reward that depends on the sampled text only, so groups are mixed, all-0 or all-1 by chance
    rewards.write_text(
        "def even_length(completions, **kwargs):\n    return [float(len(c) % 2 == 0) for c in completions]\n"
    )
    return write_config(
        {
            "mode": "local",
            "model": {"name_or_path": tiny_gpt2},
            "data": {"dataset": "builtin:addition"},
            "rewards": [{"name": f"{rewards}:even_length"}],
            "grpo": {"num_generations": 4, "generation_batch_size": 8},
            "training": {"per_device_train_batch_size": 8},
            "generation": {"max_completion_length": 6},
            "logging": {"report_to": ["none"]},
        }
    )


def test_report_follows_from_the_sampled_groups(probe_config, tmp_path):
    report = probe.run_probe(GRPOConfigLoader(config_path=probe_config), prompts=12, seed=0)
    d = report.to_dict()
    assert d["prompts"] == 12 and d["num_generations"] == 4
    assert sum(d["pass_rate_histogram"].values()) == 12
    assert all(len(p.rewards) == 4 for p in report.prompts)
    assert d["zero_spread_fraction"] == sum(p.pass_rate in (0, 1) for p in report.prompts) / 12
    assert d["mixed_prompts"] == sum(0 < p.pass_rate < 1 for p in report.prompts)
    assert 0 <= d["truncation_rate"] <= 1 and 1 <= d["mean_completion_length"] <= 7
    assert d["prompts_per_round"] == 2  # generation_batch_size 8 / num_generations 4
    text = probe.render(report)
    assert "zero-spread groups" in text and "pass rate per prompt" in text
    if report.mixed_count:
        path, snippet = probe.write_filtered(report, tmp_path / "mixed.jsonl")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(rows) == report.mixed_count
        assert {r["prompt"] for r in rows} == {p.row["prompt"] for p in report.prompts if 0 < p.pass_rate < 1}
        assert f"dataset: {path}" in snippet
        with pytest.raises(ConfigError, match="refusing to overwrite"):
            probe.write_filtered(report, path)
    with pytest.raises(ConfigError, match=r"\.jsonl"):
        probe.write_filtered(report, tmp_path / "mixed.csv")


def test_no_mixed_prompt_writes_nothing(probe_config, tmp_path):
    report = probe.run_probe(GRPOConfigLoader(config_path=probe_config), prompts=3, seed=1)
    for p in report.prompts:
        p.rewards = [0.0] * len(p.rewards)  # every group all-wrong
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        probe.write_filtered(report, tmp_path / "none.jsonl")
    assert not (tmp_path / "none.jsonl").exists()
    assert report.zero_spread_fraction == 1.0


def test_cli_probe_json_and_usage_error(probe_config, tmp_path):
    out = subprocess.run(
        [PYTHON, "-m", "grpolab", "probe", str(probe_config), "--prompts", "4", "--json"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["prompts"] == 4
    missing = subprocess.run(
        [PYTHON, "-m", "grpolab", "probe", str(tmp_path / "nope.yaml")],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
