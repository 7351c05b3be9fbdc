"""configs/examples/: every example validates, the code it points at (transforms, tools, the
reference scoring service) works, and the config commands stay free of the training stack."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest
from conftest import REPO_ROOT

from grpolab.config import GRPOConfigLoader

EXAMPLES = REPO_ROOT / "configs" / "examples"
KINDS = {
    "reward_model.yaml": "model",
    "http_reward.yaml": "http",
    "judge.yaml": "judge",
    "math_think.yaml": "name",
    "mixture.yaml": "name",
    "tools.yaml": "name",
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_example_validates(name):
    cfg = GRPOConfigLoader(config_path=EXAMPLES / name).config
    assert cfg.rewards[0].kind == KINDS[name]
    assert (EXAMPLES / name).read_text().startswith("# yaml-language-server: $schema=../grpolab.schema.json\n")


def test_example_code_loads(monkeypatch):
    from grpolab.train.data import load_transform
    from grpolab.train.tools import load_agent

    monkeypatch.chdir(REPO_ROOT)  # the examples' paths are relative to the checkout
    gsm8k = load_transform("configs/examples/transforms.py:gsm8k", "data.transform")
    assert gsm8k({"question": "2+2?", "answer": "so #### 1,004"}) == {"prompt": "2+2?", "answer": "1004"}
    agent = load_agent(GRPOConfigLoader(config_path=EXAMPLES / "tools.yaml").config)
    assert [t(2, 3) for t in agent.trainer_kwargs()["tools"]] == [5, 6]


def test_reference_scoring_service_speaks_the_protocol():
    from grpolab.config.schema import RewardSpec
    from grpolab.rewards.build import build_rewards

    spec = importlib.util.spec_from_file_location("http_reward_server", EXAMPLES / "http_reward_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), module.Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/score"
        (reward,), _ = build_rewards([RewardSpec(http={"url": url})], 8)
        assert reward(["1+1=", "2+2="], ["2", "5"], answer=["2", "4"]) == [1.0, 0.0]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_config_commands_do_not_import_the_training_stack(subprocess_env):
    names = [str(EXAMPLES / n) for n in sorted(KINDS)]
    code = (
        "import sys\n"
        "from grpolab.cli.main import main\n"
        f"for name in {names!r}:\n"
        "    main(['config', 'validate', name])\n"
        "    main(['config', 'explain', '--config', name])\n"
        "heavy = ('torch', 'transformers', 'trl', 'openai', 'httpx', 'bitsandbytes', 'math_verify', 'datasets')\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env, cwd=REPO_ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout, out.stdout[-2000:]
    assert out.stdout.count(": ok (mode local") == len(KINDS)  # every example validated


@pytest.mark.slow
def test_the_math_example_trains_with_its_transform_and_every_text_reward(
    tmp_path, tiny_llama, fast_config, train, monkeypatch
):
    """math_think.yaml as a base, on local GSM8K-shaped rows: its transform runs, math_verify,
    the <think> format rewards, Open-R1's repetition and reasoning-step rewards and a TRL reward by
    name all score real completions in a 2-step run, and the carved held-out rows are scored."""
    import json

    from conftest import copy_tracked, read_jsonl

    copy_tracked("configs/examples", tmp_path)
    rows = [{"question": f"What is {a} plus {a + 1}?", "answer": f"#### {2 * a + 1}"} for a in range(40)]
    (tmp_path / "gsm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rewards = [
        "math_verify",
        "format",
        "tag_count",
        "repetition_penalty",
        "reasoning_steps",
        "trl:think_format_reward",
    ]
    cfg = fast_config(
        tiny_llama,
        {
            "base": str(tmp_path / "configs" / "examples" / "math_think.yaml"),
            "data": {
                "dataset": str(tmp_path / "gsm.jsonl"),
                "config_name": None,
                "system_prompt": "Think.",
                "max_samples": 40,
            },
            "rewards": [{"name": name} for name in rewards],
            "generation": {"max_completion_length": 8},
        },
    )
    monkeypatch.chdir(tmp_path)  # the example's transform path is relative to the working directory
    result = train("--config", cfg)
    assert result.code == 0, result
    logged = set().union(*(r.keys() for r in read_jsonl(result.run_dir / "metrics.jsonl")))
    trained = {f"rewards/{name.removeprefix('trl:')}/mean" for name in rewards}  # TRL logs the function's name
    assert trained <= logged, sorted(k for k in logged if k.startswith("rewards/"))
    assert {f"eval/rewards/{name}" for name in rewards} <= logged  # held-out: the names as configured
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["eval"]["prompts"] == 2 and summary["eval"]["after"] is not None  # test_size 0.05 of 40
    resolved = (result.run_dir / "resolved_config.yaml").read_text()
    assert "transforms.py:gsm8k" in resolved
