"""An unreachable Hub with HF_HUB_OFFLINE unset is found with one TCP connect, before any Hub
load: a short error with the fix, not a minute of HTTP retries. Every "Hub" here is a port on
127.0.0.1, so nothing leaves the machine."""

from __future__ import annotations

import socket
import subprocess

import pytest
from conftest import PYTHON, REPO_ROOT

from grpolab.config import ConfigError
from grpolab.runtime import hub


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free once closed: a connect is refused at once


@pytest.fixture
def online_mode(monkeypatch):
    """HF_HUB_OFFLINE unset (the test session sets it), with a fresh reachability answer."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", *hub.PROXY_VARIABLES):
        monkeypatch.delenv(key, raising=False)
    hub.reach.cache_clear()
    yield monkeypatch
    hub.reach.cache_clear()


def test_unreachable_hub_fails_before_loading_with_the_fix(online_mode):
    online_mode.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ConfigError) as err:
        hub.check_reachable("someorg/not-cached-model", "model.name_or_path")
    text = str(err.value)
    assert text.startswith("model not loaded: model.name_or_path:")
    assert "`someorg/not-cached-model` is not a local path" in text and "cannot be reached" in text
    assert "pass a local path" in text and "HF_HUB_OFFLINE=1" in text


def test_a_cached_model_says_offline_mode_would_load_it(online_mode, tmp_path):
    import huggingface_hub.constants

    snapshot = tmp_path / "models--someorg--cached" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--someorg--cached" / "refs").mkdir()
    (tmp_path / "models--someorg--cached" / "refs" / "main").write_text("0123abc")
    online_mode.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    online_mode.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ConfigError, match="it is in the local cache: set HF_HUB_OFFLINE=1"):
        hub.check_reachable("someorg/cached", "model.name_or_path")


def test_no_probe_when_offline_local_or_reachable(online_mode, tmp_path):
    online_mode.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    hub.check_reachable(str(tmp_path), "model.name_or_path")  # a local folder: the Hub is not asked
    hub.check_reachable("./relative/model", "model.name_or_path")  # local-looking: its own error later
    online_mode.setenv("HF_HUB_OFFLINE", "1")
    hub.check_reachable("someorg/model", "model.name_or_path")  # offline: the cache answers
    online_mode.delenv("HF_HUB_OFFLINE")
    online_mode.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    hub.check_reachable("someorg/model", "model.name_or_path")  # behind a proxy a direct connect proves nothing
    online_mode.delenv("HTTPS_PROXY")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        online_mode.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        hub.reach.cache_clear()
        assert hub.reach().reachable
        hub.check_reachable("someorg/model", "model.name_or_path")


def test_a_hub_dataset_names_its_key(online_mode, tiny_gpt2, fast_config, train):
    online_mode.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    result = train("--config", fast_config(tiny_gpt2, {"data": {"dataset": "someorg/some-dataset"}}), "--dry-run")
    assert result.code == 2, result
    assert "data.dataset: `someorg/some-dataset` is not a local path" in result.err
    assert "HF_HUB_OFFLINE=1" in result.err and "local .jsonl" in result.err


def dry_run_online(model: str, endpoint: str, tmp_path, subprocess_env) -> subprocess.CompletedProcess:
    """`grpo_training.py --model MODEL --dry-run` in a child with offline mode and proxies unset,
    the Hub at `endpoint` and an empty cache."""
    dropped = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *hub.PROXY_VARIABLES)
    env = {k: v for k, v in subprocess_env.items() if k not in dropped}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(tmp_path / "empty-cache"))
    return subprocess.run(
        [PYTHON, str(REPO_ROOT / "training" / "grpo_training.py"), "--model", model, "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_answers_at_once_without_retries(tmp_path, subprocess_env):
    proc = dry_run_online("someorg/tiny", f"http://127.0.0.1:{closed_port()}", tmp_path, subprocess_env)
    assert proc.returncode == 2, proc.stderr
    assert "Retrying" not in proc.stderr and "Traceback" not in proc.stderr  # huggingface_hub never asked
    assert proc.stderr.count("error:") == 1 and "cannot be reached (Connection refused)" in proc.stderr
    assert "kernels-community" not in proc.stderr  # bitsandbytes' CPU-kernel warning is quieted


def test_a_reachable_hub_without_the_model_does_not_blame_offline_mode(tmp_path, subprocess_env):
    """A Hub that answers 404 (an http.server on 127.0.0.1): the id is wrong, offline mode is not
    set, so the fix is about the id and access, never "unset HF_HUB_OFFLINE"."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = dry_run_online("someorg/typo", f"http://127.0.0.1:{server.server_address[1]}", tmp_path, subprocess_env)
    finally:
        server.shutdown()
    assert proc.returncode == 2, proc.stderr
    assert "could not load model `someorg/typo`" in proc.stderr and "check the id" in proc.stderr
    assert "HF_HUB_OFFLINE" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_hub_reward_model_names_its_key_not_the_policy_flag(online_mode):
    from grpolab.rewards.model import RewardModel

    online_mode.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ConfigError) as err:
        RewardModel("someorg/reward-model", "rewards[0].model")
    text = str(err.value)
    assert "rewards[0].model: `someorg/reward-model` is not a local path" in text
    assert "pass a local path, or download it" in text and "--model" not in text


# --------------------------------------------------------------------------- a model's config.json
@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache; put(repo, data) adds a model's config.json as huggingface_hub lays it out."""
    from huggingface_hub import constants

    root = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))  # read by huggingface_hub at import

    def put(repo: str, text: str) -> None:
        folder = root / f"models--{repo.replace('/', '--')}"
        (folder / "snapshots" / "c0ffee").mkdir(parents=True)
        (folder / "snapshots" / "c0ffee" / "config.json").write_text(text)
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text("c0ffee")

    return put


LLAMA = '{"model_type": "llama", "hidden_size": 64, "max_position_embeddings": 2048}'
WHERE = ["folder", "file", "hub cache", "nowhere"]
CONTENT = {
    "llama": (LLAMA, 2048),
    "gpt2 names": ('{"n_embd": 8, "n_positions": 1024}', 1024),
    "multimodal": ('{"model_type": "x", "text_config": {"hidden_size": 4, "max_position_embeddings": 512}}', 512),
    "no positions": ('{"hidden_size": 4}', None),
    "not json": ("{oops", None),
    "not an object": ("[1, 2]", None),
}


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("content", CONTENT)
def test_model_config_reads_a_folder_a_file_or_the_cache_never_the_network(where, content, tmp_path, hub_cache):
    """One reader for every kind of model name; what cannot be read is {} (never an exception)."""
    text, positions = CONTENT[content]
    folder = tmp_path / "model"
    folder.mkdir()
    if where in ("folder", "file"):
        (folder / "config.json").write_text(text)
    elif where == "hub cache":
        hub_cache("org/model", text)
    name = {"folder": str(folder), "file": str(folder / "config.json"), "hub cache": "org/model"}.get(
        where, "org/gone"
    )
    config = hub.model_config(name)
    assert hub.context_length(config) == (positions if where != "nowhere" else None)
    if where == "nowhere":
        assert hub.config_path(name) is None and config == {}
    else:
        assert hub.config_path(name).name == "config.json" and hub.config_path(name).is_file()
