"""Every schema field given a value of the wrong type gets a fix, and the fix validates
(grpolab/config/pydantic_errors.py)."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import BaseModel, TypeAdapter

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.schema import GRPOLabConfig
from grpolab.config.yaml_io import parse_scalar


def _leaves(model: type[BaseModel], prefix: str = ""):
    """(dotted key, field) for every scalar field of the schema, nested sections included."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        nested = field.annotation if isinstance(field.annotation, type) else None
        if nested is not None and issubclass(nested, BaseModel):
            yield from _leaves(nested, f"{key}.")
        elif isinstance(field.default, (bool, int, float, str)) or field.default is None and not field.is_required():
            yield key, field


LEAVES = dict(_leaves(GRPOLabConfig))


def _wrong(field) -> object:
    """A value of another type than the field takes: a list for a scalar, a word for a number or switch."""
    return [1, 2] if isinstance(field.default, str) else "not-a-number"


@pytest.mark.parametrize("key", sorted(LEAVES))
@pytest.mark.parametrize("mode", ["local", "cluster"])
def test_a_wrong_type_gets_a_fix_that_validates(key, mode, tmp_path):
    field = LEAVES[key]
    path = tmp_path / "mine.yaml"
    section, _, name = key.rpartition(".")
    parents = section.split(".") if section else []
    lines = [f"mode: {mode}"] if key != "mode" else []
    lines += [f"{'  ' * i}{part}:" for i, part in enumerate(parents)]
    lines.append(f"{'  ' * len(parents)}{name}: {json.dumps(_wrong(field))}")
    path.write_text("\n".join(lines) + "\n")
    try:
        GRPOConfigLoader(config_path=path)
    except ConfigError as exc:
        problems, error = [p for p in exc.problems if p.key == key], str(exc)
    else:  # the field also takes this value (a free-form string): nothing to fix
        assert field.annotation not in (int, float, bool)
        return
    assert problems and all(p.fix for p in problems), error
    type_errors = [p for p in problems if p.fix.startswith(f"remove `{key}`")]
    for problem in type_errors:
        assert f"mine.yaml:{len(lines)}:" in str(problem), problem
        shown = re.search(r"its default is `([^`]*)`", problem.fix)
        if shown:  # the default shown is of the field's type
            TypeAdapter(field.annotation).validate_python(parse_scalar(shown.group(1), "fix"))
        path.write_text(f"mode: {mode}\n")  # the fix: remove the key
        GRPOConfigLoader(config_path=path)


def test_the_walk_reaches_every_section():
    sections = {key.split(".")[0] for key in LEAVES}
    assert {"model", "data", "training", "grpo", "generation", "logging", "cluster", "guard"} <= sections
    assert len(LEAVES) > 80


def test_base_set_anywhere_but_a_file_says_where_it_belongs(tmp_path, capsys):
    from grpolab.cli.main import main

    message = "base: names the config a file builds on, so only a config file can set it"
    assert main(["config", "show", "--set", "base=x.yaml"]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(mode="local", overrides={"base": "x.yaml"})
    assert message in str(info.value)
    loader = GRPOConfigLoader(mode="local")
    with pytest.raises(ConfigError) as info:
        loader.update_param("base", "x.yaml")
    assert message in str(info.value)
    (tmp_path / "x.yaml").write_text("base: preset:grpo_local\n")  # the fix: a file with base:
    assert main(["config", "show", "--config", str(tmp_path / "x.yaml")]) == 0
