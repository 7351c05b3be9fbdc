"""Rewards computed by an HTTP service (`rewards: - http: {url, ...}`).

Protocol. grpolab POSTs JSON to `url`:

    {"prompts": [...], "completions": [...], "columns": {"answer": [...], ...}}

one entry per completion in each list (a prompt is a string, or a list of chat messages; a
completion likewise), `columns` holding the dataset's other columns. The service answers
200 with `{"rewards": [r0, r1, ...]}` (a bare list works too): one number or null per
completion, null skipping that completion. A batch is split into up to `concurrency` requests
sent at once. A timeout, a connection error, a 429 or a 5xx is retried `retries` times with
backoff (0.5 s, 1 s, 2 s ... at most 8 s); after that, or on any other status or a malformed
answer, training stops with an error naming the URL and a sample. Every request has a
deadline (`timeout_s`), so a service that never answers cannot hang the run.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

from grpolab.config import ConfigError, Problem

from .errors import RewardFunctionError, show_sample
from .wrap import TRL_ARGS

RETRY_STATUS = {429, 500, 502, 503, 504}


def _jsonable(value):
    """Dataset values as JSON: numpy/tensor scalars and other objects by their plain form."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


class HttpReward:
    """A callable reward (TRL's signature) that asks an HTTP service for the scores."""

    def __init__(self, cfg, key: str):
        self.cfg, self.key, self.url, self._client = cfg, key, cfg.url, None
        missing = [env for env in cfg.headers_env.values() if env not in os.environ]
        if missing:
            raise ConfigError(
                Problem(
                    f"{key}.headers_env",
                    f"environment variable(s) {', '.join(missing)} not set (the HTTP reward's headers read them).",
                    f"export {missing[0]}=... before training, or set it in the config's `env:`",
                )
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

        body = json.dumps(
            {
                "prompts": prompts[start:end],
                "completions": completions[start:end],
                "columns": {k: v[start:end] for k, v in columns.items()},
            },
            default=_jsonable,
        )
        sample = lambda: show_sample(prompts, completions, columns, start)  # noqa: E731
        attempts = self.cfg.retries + 1
        problem = ""
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
            raise self.error(
                f'answered {str(payload)[:200]!r}; expected {{"rewards": [one number or null per completion]}}',
                sample(),
            )
        if len(values) != expected:
            raise self.error(f"answered {len(values)} rewards for {expected} completions", sample())
        bad = [v for v in values if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
        if bad:
            raise self.error(f"answered non-numbers, e.g. {bad[0]!r}; rewards must be numbers or null", sample())
        return [None if v is None else float(v) for v in values]

    def error(self, what: str, sample: str) -> RewardFunctionError:
        return RewardFunctionError(f"HTTP reward {self.url} ({self.key}): {what}\n  on sample {sample}")
