"""The Hub: a model's config.json from a folder or the cache (never downloaded), and one TCP connect before
a Hub load (offline, a missing model otherwise costs ~50 s of retries before a generic error)."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from grpolab.config.errors import INVALID_CONFIG, MODEL_NOT_LOADED, ConfigError

DEFAULT_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT_S = 3.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
# The keys a config.json gives the model's maximum positions under, by family.
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def offline() -> bool:
    """The user asked for the local cache only (as huggingface_hub reads it)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class HubReach:
    reachable: bool
    endpoint: str
    reason: str | None = None  # why not, as the socket said it


@cache
def reach(url: str | None = None) -> HubReach:
    """One TCP connect to the endpoint's host and port (cached for the process)."""
    parsed = urlparse(url := url or endpoint())
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=CONNECT_TIMEOUT_S):
            return HubReach(True, url)
    except OSError as exc:
        return HubReach(False, url, exc.strerror or type(exc).__name__)


def cached_file(repo_id: str, filename: str, revision: str | None = None, repo_type: str = "model") -> Path | None:
    """A file of a Hub repository in the local cache (huggingface_hub's own lookup; never downloads)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision, repo_type=repo_type)
    except Exception:  # an id the cache cannot even name (bad characters): not cached
        return None
    return Path(found) if isinstance(found, str) else None


def config_path(model: str, revision: str | None = None) -> Path | None:
    """Where a model's config.json is: in its folder (there or not), the file itself, or the Hub cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path / "config.json"
    if path.name == "config.json" and path.is_file():
        return path
    return cached_file(model, "config.json", revision)


def model_config(model: str, revision: str | None = None) -> dict:
    """A model's config.json (a multimodal model's `text_config`), or {} when missing or unparsable."""
    try:
        data = json.loads(path.read_text()) if (path := config_path(model, revision)) is not None else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    text = data.get("text_config")
    return text if isinstance(text, dict) and "hidden_size" not in data else data


def context_length(config: dict) -> int | None:
    """The model's maximum positions (prompt + completion must fit) from its config.json, or None."""
    return next((config[k] for k in POSITION_KEYS if isinstance(config.get(k), int) and config[k] > 0), None)


def check_reachable(name: str, key: str, repo_type: str = "model", revision: str | None = None) -> None:
    """Before a Hub load of `name` (config key `key`): fail now, with the fix, when the Hub cannot be reached."""
    local = name.startswith((".", "/", "~")) or os.path.exists(os.path.expanduser(name))
    # Behind a proxy a direct connect says nothing about whether requests get through.
    if offline() or local or any(os.environ.get(v) for v in PROXY_VARIABLES):
        return
    if (hub := reach()).reachable:
        return
    filename = "config.json" if repo_type == "model" else "README.md"
    if cached_file(name, filename, revision, repo_type) is not None:
        fix = "it is in the local cache: set HF_HUB_OFFLINE=1 to load it from there"
    elif repo_type == "model":
        flag = " (--model ./my_model)" if key == "model.name_or_path" else ""
        fix = (
            f"pass a local path{flag}, or download it once where the Hub is reachable "
            "(`hf download` fills the cache) and set HF_HUB_OFFLINE=1 here"
        )
    else:
        fix = (
            "set HF_HUB_OFFLINE=1 if it was loaded once before (the datasets cache), "
            "or point the key at a local .jsonl/.csv/.parquet file"
        )
    message = f"`{name}` is not a local path and the Hub at {hub.endpoint} cannot be reached ({hub.reason})."
    raise ConfigError.of(key, message, fix, kind=MODEL_NOT_LOADED if repo_type == "model" else INVALID_CONFIG)
