"""An LLM judge as a reward (`rewards: - judge: {...}`) over the OpenAI-compatible chat API (vllm serve,
TGI, llama.cpp, hosted): one message per completion, the rubric with `{prompt}`, `{completion}` or
`{<column>}` filled in, else rubric + prompt + response + answer format. `parse`: score_0_10, yes_no or
regex; an unreadable answer stops training (a judge not following the rubric gives no signal)."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from grpolab.config import ConfigError

from .errors import RewardFunctionError, completion_text, show_sample
from .wrap import TRL_ARGS

ANSWER_FORMAT = {
    "score_0_10": "Answer with a single integer score from 0 (worst) to 10 (best) and nothing else.",
    "yes_no": "Answer with yes or no and nothing else.",
    "regex": "",
}
EXPECTED = {"score_0_10": "a number from 0 to 10", "yes_no": "yes or no", "regex": "a match of `{pattern}`"}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_FIELD = re.compile(r"\{(\w+)\}")


class JudgeReward:
    """A callable reward (TRL's signature) asking an OpenAI-compatible model to grade each completion."""

    def __init__(self, cfg, key: str):
        self.cfg, self.key, self.rubric = cfg, key, cfg.rubric
        if cfg.rubric_file is not None:
            path = Path(cfg.rubric_file)
            if not path.is_file():
                fix = "give a path relative to the current directory"
                raise ConfigError.of(f"{key}.rubric_file", f"rubric file `{path}` not found.", fix)
            self.rubric = path.read_text()
        # A rubric naming {prompt} or {completion} is the whole message; any other is wrapped.
        self.templated = "{prompt}" in self.rubric or "{completion}" in self.rubric
        if cfg.api_key_env and cfg.api_key_env not in os.environ:
            raise ConfigError.of(
                f"{key}.api_key_env",
                f"environment variable {cfg.api_key_env} is not set (the judge's API key).",
                f"export {cfg.api_key_env}=... before training, or remove `api_key_env` for a local server",
            )
        # Local servers accept any key, but the client insists on a value.
        api_key = os.environ[cfg.api_key_env] if cfg.api_key_env else "EMPTY"
        try:
            import openai
        except ImportError:
            raise ConfigError.of(key, "the judge reward needs the openai client.", "pip install openai") from None
        self.openai = openai
        self.client = openai.OpenAI(
            base_url=cfg.base_url, api_key=api_key, timeout=cfg.timeout_s, max_retries=cfg.retries
        )

    def message(self, prompt, completion, row: dict) -> str:
        if isinstance(prompt, list):
            prompt = "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in prompt)
        values = {"prompt": str(prompt), "completion": completion_text(completion), **row}
        if self.templated:
            return _FIELD.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), self.rubric)
        parts = [self.rubric.strip(), f"Prompt:\n{values['prompt']}", f"Response:\n{values['completion']}"]
        return "\n\n".join(p for p in [*parts, ANSWER_FORMAT[self.cfg.parse]] if p)

    def __call__(self, prompts, completions, **columns) -> list[float]:
        n = len(completions)
        data = {k: v for k, v in columns.items() if k not in TRL_ARGS and isinstance(v, list) and len(v) == n}
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, max(1, n))) as pool:
            return list(pool.map(lambda i: self.judge(prompts, completions, data, i), range(n)))

    def judge(self, prompts, completions, columns, i: int) -> float:
        content = self.message(prompts[i], completions[i], {k: v[i] for k, v in columns.items()})
        where = f"judge `{self.cfg.model}` at {self.cfg.base_url} ({self.key})"
        sample = lambda: show_sample(prompts, completions, columns, i)  # noqa: E731
        fail = lambda what: RewardFunctionError(f"{where}: {what}\n  on sample {sample()}")  # noqa: E731
        try:
            response = self.client.chat.completions.create(
                model=self.cfg.model,
                messages=[{"role": "user", "content": content}],
                max_tokens=self.cfg.max_tokens,
                temperature=0.0,
            )
            answer = response.choices[0].message.content or ""
        except self.openai.APITimeoutError:
            raise fail(f"no answer within timeout_s={self.cfg.timeout_s:g} s") from None
        except self.openai.APIConnectionError as exc:
            raise fail(f"could not connect ({exc})") from None
        except self.openai.APIStatusError as exc:
            raise fail(f"HTTP {exc.status_code}: {str(exc)[:200]}") from None
        except (AttributeError, IndexError, TypeError) as exc:
            raise fail(f"malformed chat-completions answer ({exc})") from None
        score = self.read(answer)
        if score is None:
            expected = EXPECTED[self.cfg.parse].format(pattern=self.cfg.pattern)
            raise fail(
                f"answered {answer[:200]!r}, which is not {expected} (parse: {self.cfg.parse}); check the rubric "
                "and that the model follows it"
            )
        return score

    def read(self, answer: str) -> float | None:
        if self.cfg.parse == "score_0_10":
            found = _NUMBER.search(answer)
            return float(found.group()) / 10 if found and 0 <= float(found.group()) <= 10 else None
        if self.cfg.parse == "yes_no":
            return {"yes": 1.0, "no": 0.0}.get((re.findall(r"[a-z]+", answer.lower()) or [""])[0])
        found = re.search(self.cfg.pattern, answer)
        try:
            return float(found.group(1)) if found else None
        except (TypeError, ValueError):
            return None
