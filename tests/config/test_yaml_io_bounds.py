"""Untrusted YAML has bounded cost (issue 21, section 6).

Reading and validating a config costs time linear in its size below the limits, and past them
(size, nesting depth, aliases that expand without bound) the file is refused with a short error
and exit code 2, never a RecursionError traceback or a hang. bench/yaml_scaling.py measures the
same on larger files."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpolab.cli.main import main
from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.yaml_io import MAX_CONFIG_BYTES, MAX_DEPTH, parse_yaml_text

# Every shape a large config can take: the same entry repeated n times in a mapping or a list,
# block or flow, valid or refused by the schema.
SHAPES = {
    "env map": lambda n: "mode: local\nenv:\n" + "".join(f"  VAR_{i}: value_{i}\n" for i in range(n)),
    "flow env map": lambda n: "mode: local\nenv: {" + ", ".join(f"V{i}: {i}" for i in range(n)) + "}\n",
    "tags list": lambda n: "mode: local\nlogging:\n  tags:\n" + "".join(f"    - t{i}\n" for i in range(n)),
    "unknown keys": lambda n: "mode: local\ntraining:\n" + "".join(f"  unknown_{i}: 1\n" for i in range(n)),
    "nested sections": lambda n: (
        "mode: local\nenv:\n"
        + "".join(f"  V{i}: {i}\n" for i in range(n // 2))
        + "logging:\n  tags: ["
        + ", ".join(f"t{i}" for i in range(n // 2))
        + "]\n"
    ),
}


def _seconds(path) -> float:
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        try:
            _ = GRPOConfigLoader(config_path=path).config
        except ConfigError:
            pass
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_validate_time_grows_linearly_with_size(shape, tmp_path):
    """The issue's example: an `env:` map of 1k entries took 0.74 s and 3k 2.9 s (quadratic,
    from recording each key's origin by scanning every other key). Eight times the entries
    must cost well under 64 times (quadratic) the time; linear is 8."""
    small, large = tmp_path / "small.yaml", tmp_path / "large.yaml"
    small.write_text(SHAPES[shape](1000))
    large.write_text(SHAPES[shape](8000))
    _seconds(small)  # warm: imports, the schema's first build
    ratio = _seconds(large) / _seconds(small)
    assert ratio < 24, f"{shape}: 8x the entries took {ratio:.1f}x the time"


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    path.write_text("mode: local\nenv:\n" + "".join(f"  VAR_{i}: value_{i}\n" for i in range(60_000)))
    assert path.stat().st_size > MAX_CONFIG_BYTES
    start = time.perf_counter()
    assert main(["config", "validate", str(path)]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert f"{path}: is {path.stat().st_size:,} bytes; a config file may be at most" in err
    assert "Fix: move large data" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "text",
    [
        "env: " + "[" * 3000 + "]" * 3000,
        "env: " + "{a: " * 3000 + "1" + "}" * 3000,
        "env:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(400)),
        "env:\n" + "".join("  " * (i + 1) + "-\n" for i in range(400)),
    ],
    ids=["flow lists", "flow maps", "block maps", "block lists"],
)
def test_deep_nesting_is_a_problem_not_a_recursion_error(text, tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text("mode: local\n" + text + "\n")
    start = time.perf_counter()
    assert main(["config", "validate", str(path)]) == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert f"nested more than {MAX_DEPTH} levels deep" in err and "Traceback" not in err
    assert "RecursionError" not in err


def test_deep_nesting_in_a_set_value_is_refused_too(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("mode: local\n")
    assert main(["config", "set", str(path), "env=" + "[" * 2000 + "]" * 2000]) == 2
    assert "nested more than" in capsys.readouterr().err
    assert path.read_text() == "mode: local\n"


def test_aliases_that_expand_without_bound_are_refused_fast(tmp_path):
    lines = ["mode: local", "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\nenv: {A: *a11}\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases .* expand to more than"):
        GRPOConfigLoader(config_path=path)
    assert time.perf_counter() - start < 5


def test_a_few_aliases_and_merge_keys_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("mode: local\nenv: &e {A: '1', B: '2'}\nlogging:\n  tags: &t [a, b]\n")
    assert GRPOConfigLoader(config_path=path).config.env == {"A": "1", "B": "2"}


def test_many_problems_are_summarised(tmp_path):
    path = tmp_path / "unknown.yaml"
    path.write_text(SHAPES["unknown keys"](500))
    with pytest.raises(ConfigError) as info:
        GRPOConfigLoader(config_path=path)
    assert len(info.value.problems) == 500
    text = str(info.value)
    assert len(text.splitlines()) < 60 and "and 450 more" in text


# Random nesting of mappings and lists, block or flow, up to well past the depth limit: reading
# it either succeeds or is a ConfigError (never a RecursionError or another exception).
_leaf = st.one_of(st.integers(), st.text("abc", min_size=1, max_size=3))


def _nest(depth_and_kinds):
    depth, kinds = depth_and_kinds
    value = "1"
    for kind in kinds[:depth]:
        value = f"[{value}]" if kind else f"{{k: {value}}}"
    return value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 400).flatmap(lambda d: st.tuples(st.just(d), st.lists(st.booleans(), min_size=d, max_size=d))))
def test_any_nesting_depth_is_read_or_refused_cleanly(depth_and_kinds):
    text = f"env: {_nest(depth_and_kinds)}\n"
    try:
        parse_yaml_text(text, "generated.yaml")
    except ConfigError as exc:
        assert depth_and_kinds[0] + 1 > MAX_DEPTH, str(exc)
        assert "nested more than" in str(exc)
    else:
        assert depth_and_kinds[0] + 1 <= MAX_DEPTH


def _float_keys() -> list[str]:
    from grpolab.config.keys import flatten

    data = GRPOConfigLoader().to_dict()
    return sorted(k for k, v in flatten(data).items() if isinstance(v, float) and "[" not in k)


@pytest.mark.parametrize("key", _float_keys())
@pytest.mark.parametrize("typed", ["1e400", "-2.5E+999", "1_0e400"])
def test_a_number_past_a_floats_range_shows_what_was_typed(key, typed, tmp_path):
    """`1e400` said "a finite number (got inf)"; every float key, from a file and from --set."""
    path = tmp_path / "c.yaml"
    section, _, name = key.rpartition(".")
    path.write_text(f"mode: local\n{section}:\n  {name}: {typed}\n" if section else f"mode: local\n{name}: {typed}\n")
    with pytest.raises(ConfigError, match=f"`{re.escape(typed)}` is beyond the largest number") as info:
        GRPOConfigLoader(config_path=path)
    assert f"{path}:{3 if section else 2}" in str(info.value)
    with pytest.raises(ConfigError, match=f"--set {re.escape(key)}: `{re.escape(typed)}` is beyond"):
        GRPOConfigLoader(overrides=[f"{key}={typed}"])


def _special_files(tmp_path):
    """Paths that are not regular files, each as a config would be given: directly, or behind a link."""
    import os

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    return {"/dev/zero": "/dev/zero", "link to /dev/zero": str(tmp_path / "zero.yaml"), "named pipe": str(fifo)}


def _read_as(how: str, target: str, tmp_path) -> int:
    """Name `target` as a config the way `how` says: validate it, --config it, or `base:` it."""
    if how == "validate":
        return main(["config", "validate", target])
    if how == "--config":
        return main(["config", "show", "--config", target])
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {target}\n")
    return main(["config", "validate", str(child)])


@pytest.mark.parametrize("how", ["--config", "validate", "base:"])
def test_a_device_or_pipe_is_refused_before_it_is_read(how, tmp_path, capsys):
    """Every way a config file is named, and every kind of non-file: exit 2 at once, never a read
    that never ends (/dev/zero fills memory, a pipe waits forever)."""
    for label, target in _special_files(tmp_path).items():
        start = time.perf_counter()
        code = _read_as(how, target, tmp_path)
        err = capsys.readouterr().err
        refused = "is not a regular file" in err or (how == "base:" and "is not a YAML config file" in err)
        assert code == 2 and refused and "Traceback" not in err, (label, err)
        assert time.perf_counter() - start < 5, label


def test_a_huge_value_makes_a_short_error_line_for_every_key(tmp_path):
    """Every scalar key of a preset given a 200,000-character word: each problem is one short line
    that still names the file, line and key, not an echo of the whole value."""
    from grpolab.config.keys import flatten
    from grpolab.config.layers import preset_path

    flat = flatten(GRPOConfigLoader(config_path=preset_path("local")).to_dict(), split_lists=False)
    keys = [k for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    assert len(keys) > 20
    huge = "x" * 200_000
    for key in keys:
        section, _, name = key.rpartition(".")
        text = f"{section}:\n  {name}: {huge}\n" if section and "." not in section else None
        if text is None:
            continue
        path = tmp_path / "huge_value.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            GRPOConfigLoader(config_path=path)
        lines = str(info.value).splitlines()
        assert all(len(line) < 5000 for line in lines), (key, max(map(len, lines)))
        assert f"{path}:2: {key}:" in str(info.value) and "characters not shown" in str(info.value), key


def _broken_links(tmp_path):
    """Links that lead to no file: to nothing, to themselves, in a ring of two, to a broken link."""
    (tmp_path / "dangling.yaml").symlink_to("nowhere.yaml")
    (tmp_path / "self.yaml").symlink_to("self.yaml")
    (tmp_path / "ring_a.yaml").symlink_to("ring_b.yaml")
    (tmp_path / "ring_b.yaml").symlink_to("ring_a.yaml")
    (tmp_path / "chain.yaml").symlink_to("dangling.yaml")
    return {
        "dangling.yaml": "does not exist",
        "self.yaml": "a link loop",
        "ring_a.yaml": "a link loop",
        "chain.yaml": "does not exist",
    }


@pytest.mark.parametrize("how", ["--config", "validate", "base:"])
def test_a_broken_link_says_it_is_a_link_and_where_it_points(how, tmp_path, capsys):
    for name, said in _broken_links(tmp_path).items():
        code = _read_as(how, str(tmp_path / name), tmp_path)
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, (name, err)
        if how != "base:":  # base: names the chain it broke in instead
            assert f"{name}: is a symbolic link to `" in err and said in err, (name, err)


# Numbers of any length: Python refuses int(text) past 4300 digits ("Exceeds the limit"), so
# ruamel raised a ValueError traceback; a shown value must stay short whatever its length.
DIGITS = [19, 20, 309, 310, 4299, 4300, 4301, 50_000]
NUMBER_KEYS = ["training.max_steps", "training.seed", "training.learning_rate", "grpo.beta", "grpo.delta"]


def _refusal(key: str, number: str, where: str, tmp_path) -> str:
    section, name = key.split(".")
    if where == "file":
        path = tmp_path / "big.yaml"
        path.write_text(f"mode: local\n{section}:\n  {name}: {number}\n")
        kwargs = {"config_path": path}
    else:
        kwargs = {"overrides": [f"{key}={number}"]}
    try:
        GRPOConfigLoader(mode="local", **kwargs)
    except ConfigError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("where", ["file", "--set"])
@pytest.mark.parametrize("key", NUMBER_KEYS)
def test_a_number_of_any_length_is_a_short_problem_never_a_traceback(key, where, tmp_path):
    for digits in DIGITS:
        for number in ("9" * digits, "-" + "9" * digits, "9" * digits + ".5", "9" * digits + "e5"):
            message = _refusal(key, number, where, tmp_path)
            if digits == 19 and key.startswith("grpo.") or not message:
                continue  # a float key takes a 19-digit number; only the number's size is checked here
            assert len(message) < 400, f"{key}={digits} digits ({where}): {len(message)} characters"
            assert (f"--set {key}" if where == "--set" else "big.yaml:3") in message, message
    # Past a float's range every key refuses it, and the message says what was written.
    assert "9999" in _refusal(key, "9" * 5000, where, tmp_path)


def test_a_huge_number_inside_a_string_is_kept():
    tree = parse_yaml_text(f"run_name: '{'9' * 5000}'\n", "x.yaml")
    assert tree["run_name"] == "9" * 5000
