"""`tools:`, `environment:` and `rollout:`: imported and checked against what TRL's GRPOTrainer
calls (a tool's JSON schema from its docstring, an environment's reset(), rollout_func(prompts,
trainer)), errors naming the config key and the spec; the dry run prints and checks them."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from grpolab.config import ConfigError
from grpolab.config.schema import GRPOLabConfig
from grpolab.train.tools import load_agent

MODULE_TEXT = '''
def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


def undocumented(a, b):
    return a + b


class Calculator:
    def reset(self, **kwargs):
        self.memory = 0

    def store(self, value: int) -> str:
        """Keep a number.

        Args:
            value: the number to keep
        """
        self.memory = value
        return "stored"


class NoReset:
    def step(self, x: int) -> int:
        """Step.

        Args:
            x: input
        """
        return x


class NeedsArgs:
    def __init__(self, url):
        self.url = url

    def reset(self):
        pass


def rollout(prompts, trainer):
    return {"prompt_ids": [], "completion_ids": [], "logprobs": []}


def bad_rollout(prompts):
    return {}
'''


@pytest.fixture
def mod(tmp_path, monkeypatch):
    name = f"agent_parts_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE_TEXT))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def cfg(**sections):
    return GRPOLabConfig(**sections)


def test_good_parts_become_trainer_kwargs(mod):
    agent = load_agent(cfg(tools=[f"{mod}:add"], environment=f"{mod}:Calculator", rollout=f"{mod}:rollout"))
    kwargs = agent.trainer_kwargs()
    assert kwargs["tools"][0](2, 3) == 5
    assert kwargs["environment_factory"].__name__ == "Calculator" and kwargs["rollout_func"].__name__ == "rollout"
    assert agent.describe()[0].startswith(f"tools        {mod}:add")
    named = load_agent(cfg(environment={"calc": f"{mod}:Calculator"}))
    assert list(named.trainer_kwargs()["environment_factory"]) == ["calc"]
    assert load_agent(cfg()).trainer_kwargs() == {}


@pytest.mark.parametrize(
    "sections, expected",
    [
        ({"tools": ["{mod}:undocumented"]}, ["tools[0]", "{mod}:undocumented", "cannot be shown to the model"]),
        ({"tools": ["{mod}:missing"]}, ["tools[0]", "has no function `missing`"]),
        ({"tools": ["no_such_pkg_xyz:fn"]}, ["tools[0]", "tool `no_such_pkg_xyz:fn` could not be imported"]),
        ({"tools": ["{mod}:Calculator"]}, ["tools[0]", "is a type, not a function"]),
        ({"environment": "{mod}:NoReset"}, ["environment", "has no `reset` method"]),
        ({"environment": "{mod}:NeedsArgs"}, ["environment", "could not be created with no arguments"]),
        ({"environment": {"web": "{mod}:NoReset"}}, ["environment.web", "has no `reset` method"]),
        ({"rollout": "{mod}:bad_rollout"}, ["rollout", "cannot be called as rollout_func(prompts, trainer)"]),
    ],
)
def test_bad_parts_name_the_key_and_the_spec(mod, sections, expected):
    sections = {
        k: (
            [v.format(mod=mod) for v in val]
            if isinstance(val, list)
            else {n: s.format(mod=mod) for n, s in val.items()}
            if isinstance(val, dict)
            else val.format(mod=mod)
        )
        for k, val in sections.items()
    }
    with pytest.raises(ConfigError) as info:
        load_agent(cfg(**sections))
    for part in expected:
        assert part.format(mod=mod) in str(info.value), str(info.value)


def test_every_problem_is_reported_at_once(mod):
    with pytest.raises(ConfigError) as info:
        load_agent(cfg(tools=[f"{mod}:undocumented", f"{mod}:nope"], rollout=f"{mod}:bad_rollout"))
    assert len(info.value.problems) == 3


def test_specs_are_validated_by_the_schema():
    with pytest.raises(ValueError):
        GRPOLabConfig(tools=["not a spec"])
    with pytest.raises(ValueError):
        GRPOLabConfig(rollout="missing_colon")


def test_a_template_without_tool_calls_is_refused(mod):
    from conftest import CHAT_TEMPLATE, make_char_tokenizer

    with pytest.raises(ConfigError, match="need a chat template that renders tool calls.*ignores them"):
        load_agent(cfg(tools=[f"{mod}:add"]), make_char_tokenizer(CHAT_TEMPLATE))
    with pytest.raises(ConfigError, match="has no chat template"):
        load_agent(cfg(tools=[f"{mod}:add"]), make_char_tokenizer())


def test_dry_run_checks_tools_and_exits_2_on_a_bad_one(tiny_llama, mod, fast_config, train, tmp_path):
    config = fast_config(tiny_llama, {"tools": [f"{mod}:undocumented"]})
    result = train("--config", config, "--dry-run")
    assert result.code == 2, result
    assert f"tools[0]: tool `{mod}:undocumented` cannot be shown to the model" in result.err
    assert not (tmp_path / "runs").exists()
