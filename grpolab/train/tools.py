"""`tools:`, `environment:` and `rollout:` from the config, imported and checked against what TRL's
GRPOTrainer calls (a tool: type hints and an `Args:` docstring for its JSON schema; an environment: a
class built with no arguments, with `reset`, whose public methods are tools; a rollout:
`rollout_func(prompts, trainer)`). Errors name the key and spec, before any model loads."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from grpolab.config import ConfigError, Problem
from grpolab.rewards.python import import_object


@dataclass
class Agent:
    tools: list = field(default_factory=list)
    tool_specs: list[str] = field(default_factory=list)
    environment_factory: object = None  # a class, or {name: class}
    rollout_func: object = None
    specs: dict = field(default_factory=dict)

    def trainer_kwargs(self) -> dict:
        """GRPOTrainer keyword arguments (only those that are set)."""
        given = {"tools": list(self.tools) or None, "environment_factory": self.environment_factory}
        return {k: v for k, v in {**given, "rollout_func": self.rollout_func}.items() if v is not None}

    def describe(self) -> list[str]:
        lines = []
        if self.tools:
            lines.append(
                f"tools        {', '.join(self.tool_specs)} (checked: importable, JSON schema from the docstring)"
            )
        if self.environment_factory is not None:
            lines.append(f"environment  {self.specs['environment']} (checked: reset(), public methods as tools)")
        if self.rollout_func is not None:
            lines.append(f"rollout      {self.specs['rollout']} (checked: rollout_func(prompts, trainer))")
        return lines


def _tool_schema_problem(func, key: str, spec: str) -> Problem | None:
    from transformers.utils import get_json_schema

    try:
        get_json_schema(func)
    except Exception as exc:
        return Problem(
            key,
            f"tool `{spec}` cannot be shown to the model: {type(exc).__name__}: {exc}",
            "give it type hints on every argument and a docstring with an `Args:` section describing each",
        )
    return None


def _import(spec: str, key: str, what: str, problems: list):
    """The object behind `spec`, or None with its problems added to `problems`."""
    try:
        return import_object(spec, key, what)
    except ConfigError as exc:
        problems += exc.problems
        return None


def _load_tools(cfg, problems: list) -> list:
    tools = []
    for i, spec in enumerate(cfg.tools):
        key = f"tools[{i}]"
        if (func := _import(spec, key, "tool", problems)) is None:
            continue
        if not callable(func) or inspect.isclass(func):
            problems.append(Problem(key, f"tool `{spec}` is a {type(func).__name__}, not a function."))
        elif problem := _tool_schema_problem(func, key, spec):
            problems.append(problem)
        else:
            tools.append(func)
    return tools


def _check_environment(cls, key: str, spec: str, problems: list) -> None:
    if not inspect.isclass(cls) and not callable(cls):
        problems.append(Problem(key, f"environment `{spec}` is a {type(cls).__name__}, not a class."))
        return
    try:
        instance = cls()  # TRL builds every environment without arguments
    except Exception as exc:
        why = f"environment `{spec}` could not be created with no arguments: {type(exc).__name__}: {exc}."
        problems.append(Problem(key, why))
        return
    methods = dict(inspect.getmembers(type(instance), predicate=inspect.isfunction))
    if "reset" not in methods:
        problems.append(Problem(key, f"environment `{spec}` has no `reset` method, which TRL calls per rollout."))
    public = [name for name in methods if not name.startswith("_") and name not in ("reset", "get_reward")]
    for name in public:
        if problem := _tool_schema_problem(getattr(instance, name), key, f"{spec}.{name}"):
            problems.append(problem)


def _check_rollout(func, spec: str, problems: list) -> None:
    if not callable(func):
        problems.append(Problem("rollout", f"rollout `{spec}` is a {type(func).__name__}, not a function."))
        return
    try:
        inspect.signature(func).bind(["prompt"], object())
    except TypeError as exc:
        why = f"rollout `{spec}` cannot be called as rollout_func(prompts, trainer): {exc}."
        problems.append(Problem("rollout", why, "define it as `def rollout(prompts: list, trainer) -> dict`"))
    except ValueError:
        pass  # no signature to read (a builtin): TRL will find out


def _template_problem(tokenizer) -> Problem | None:
    """TRL shows tools to the model and reads its calls through the chat template: it must render a
    tool-calling exchange (assistant tool_calls, then a tool message)."""
    from trl.chat_template_utils import supports_tool_calling

    if supports_tool_calling(tokenizer):
        return None
    what = "ignores them." if getattr(tokenizer, "chat_template", None) else "has no chat template."
    return Problem(
        "model.name_or_path",
        "tools and environments need a chat template that renders tool calls and tool results; this "
        f"model's tokenizer {what}",
        "use a model whose template supports tools (Qwen2.5/Qwen3, Llama 3.1+, ...), or remove `tools`/`environment`",
    )


def load_agent(cfg, tokenizer=None) -> Agent:
    """The config's tools, environment and rollout, imported and checked (with `tokenizer`, also its
    chat template); ConfigError lists every problem."""
    problems: list[Problem] = []
    agent = Agent(tool_specs=list(cfg.tools))
    agent.tools = _load_tools(cfg, problems)
    env = cfg.environment
    if env is not None:
        named = env if isinstance(env, dict) else {None: env}
        factories = {}
        for name, spec in named.items():
            key = "environment" if name is None else f"environment.{name}"
            if (cls := _import(spec, key, "environment", problems)) is not None:
                _check_environment(cls, key, spec, problems)
                factories[name] = cls
        agent.environment_factory = factories if isinstance(env, dict) else factories.get(None)
        agent.specs["environment"] = env if isinstance(env, str) else ", ".join(f"{k}: {v}" for k, v in env.items())
    if cfg.rollout is not None and (func := _import(cfg.rollout, "rollout", "rollout", problems)) is not None:
        agent.rollout_func = func
        _check_rollout(func, cfg.rollout, problems)
        agent.specs["rollout"] = cfg.rollout
    if tokenizer is not None and (cfg.tools or cfg.environment is not None) and not problems:
        if problem := _template_problem(tokenizer):
            problems.append(problem)
    if problems:
        raise ConfigError(problems)
    return agent
