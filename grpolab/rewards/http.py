"""Rewards from an HTTP service (`rewards: - http: {url, ...}`). grpolab POSTs `{"prompts": [...],
"completions": [...], "columns": {"answer": [...], ...}}` (strings or chat messages, one per completion);
the service answers 200 with `{"rewards": [...]}` or a bare list, a number or null (skip) each. A batch
goes as up to `concurrency` requests; a timeout, connection error, 429 or 5xx is retried `retries` times
(backoff 0.5 s, 1 s ... at most 8 s), then stops training with an error naming the URL and a sample, as
any other status or a malformed answer does. Each request has a deadline (`timeout_s`): no hung run."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

from grpolab.config import ConfigError

from .errors import RewardFunctionError, show_sample
from .wrap import TRL_ARGS

RETRY_STATUS = {429, 500, 502, 503, 504}


class HttpReward:
    """A callable reward (TRL's signature) that asks an HTTP service for the scores."""

    def __init__(self, cfg, key: str):
        self.cfg, self.key, self.url, self._client = cfg, key, cfg.url, None
        if missing := [env for env in cfg.headers_env.values() if env not in os.environ]:
            raise ConfigError.of(
                f"{key}.headers_env",
                f"environment variable(s) {', '.join(missing)} not set (the HTTP reward's headers read them).",
                f"export {missing[0]}=... before training, or set it in the config's `env:`",
            )
        self.headers = {"Content-Type": "application/json"}
        self.headers.update({name: os.environ[env] for name, env in cfg.headers_env.items()})

    def client(self):
        import httpx

        if self._client is None:
            limits = httpx.Limits(max_connections=self.cfg.concurrency)
            self._client = httpx.Client(timeout=httpx.Timeout(self.cfg.timeout_s), limits=limits)
        return self._client

    def __call__(self, prompts, completions, **columns) -> list:
        n = len(completions)
        data = {k: v for k, v in columns.items() if k not in TRL_ARGS and isinstance(v, list) and len(v) == n}
        size = -(-n // min(self.cfg.concurrency, max(1, n)))
        chunks = [(s, min(n, s + size)) for s in range(0, n, size)]
        post = lambda chunk: self.post(prompts, completions, data, *chunk)  # noqa: E731
        if len(chunks) == 1:
            return post(chunks[0])
        with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
            return [r for part in pool.map(post, chunks) for r in part]

    def post(self, prompts, completions, columns, start: int, end: int) -> list:
        import httpx

        part = {"prompts": prompts[start:end], "completions": completions[start:end]}
        part["columns"] = {k: v[start:end] for k, v in columns.items()}
        plain = lambda value: value.tolist() if hasattr(value, "tolist") else str(value)  # noqa: E731  numpy, tensors
        body = json.dumps(part, default=plain)
        sample = lambda: show_sample(prompts, completions, columns, start)  # noqa: E731
        attempts, problem = self.cfg.retries + 1, ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
            try:
                response = self.client().post(self.url, content=body, headers=self.headers)
            except httpx.TimeoutException:
                problem = f"no answer within timeout_s={self.cfg.timeout_s:g} s"
                continue
            except httpx.TransportError as exc:
                problem = f"could not connect ({type(exc).__name__}: {exc})"
                continue
            if response.status_code in RETRY_STATUS:
                problem = f"HTTP {response.status_code}: {response.text[:200]!r}"
                continue
            if response.status_code != 200:
                raise self.error(f"HTTP {response.status_code}: {response.text[:200]!r}", sample())
            return self.parse(response, end - start, sample)
        raise self.error(f"{problem} ({attempts} attempt{'s' if attempts > 1 else ''})", sample())

    def parse(self, response, expected: int, sample) -> list:
        try:
            payload = response.json()
        except ValueError:
            raise self.error(f"answered non-JSON {response.text[:200]!r}", sample()) from None
        values = payload.get("rewards") if isinstance(payload, dict) else payload
        if not isinstance(values, list):
            expected = '{"rewards": [one number or null per completion]}'
            raise self.error(f"answered {str(payload)[:200]!r}; expected {expected}", sample())
        if len(values) != expected:
            raise self.error(f"answered {len(values)} rewards for {expected} completions", sample())
        if bad := [v for v in values if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]:
            raise self.error(f"answered non-numbers, e.g. {bad[0]!r}; rewards must be numbers or null", sample())
        return [None if v is None else float(v) for v in values]

    def error(self, what: str, sample: str) -> RewardFunctionError:
        return RewardFunctionError(f"HTTP reward {self.url} ({self.key}): {what}\n  on sample {sample}")
