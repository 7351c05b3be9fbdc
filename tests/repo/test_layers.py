"""The package's rooms depend on each other in one direction (docs/architecture.md draws it): the
command line sits on top and nothing imports it; the config sits at the bottom and imports no
other room, so config commands stay free of torch. Every room has a row in ALLOWED, the rows form
no cycle, and the imports found in the code (lazy ones inside functions included) stay inside them."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "grpolab"
# room -> the rooms it may import, bottom to top. Each room's job is in docs/architecture.md.
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "presets": set(),  # data only: the preset YAML files, accelerate configs, the JSON Schema
    "sampling": set(),
    "runtime": {"config"},
    "run": {"config"},
    "rewards": {"config", "runtime"},
    "demo": {"config", "sampling"},
    "launch": {"config", "run", "runtime"},
    "experiment": {"config", "run", "runtime"},
    "tune": {"config", "runtime", "run", "rewards", "demo", "experiment"},
    "guard": {"config", "run", "tune"},
    "train": {"config", "runtime", "run", "sampling", "rewards", "demo", "launch", "guard", "tune"},
    "cli": {"config", "runtime", "run", "launch", "experiment", "guard", "train", "tune"},
}
# Imports against the direction above, each at one named place and only inside a function, so
# that importing the lower room never loads the upper one: GRPOConfigLoader.trl_kwargs() is the
# spec's Python API, and the mapping it returns consumes the runtime's decisions.
SEAMS = {("config", "runtime"): ("config/loader.py", "grpolab.runtime.trl_args")}


def _room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "(top)"


def _imported(path: Path, node: ast.AST) -> list[str]:
    """The grpolab modules a node imports, relative imports resolved against the file's package."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
    elif isinstance(node, ast.ImportFrom):
        package = ["grpolab", *path.relative_to(PACKAGE).parts[:-1]]
        base = package[: len(package) - node.level + 1]
        names = [".".join([*base, node.module] if node.module else base)]
    else:
        return []
    return [name for name in names if name.startswith("grpolab.")]


def imports() -> list[tuple[str, str, str, str, bool]]:
    """(room, imported room, file, module, at module level) for every import across rooms."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            for module in _imported(path, node):
                room, other = _room(path), module.split(".")[1]
                if other != room:
                    rel = str(path.relative_to(PACKAGE))
                    found.append((room, other, rel, module, id(node) in top_level))
    return found


def room_imports(include_seams: bool = False) -> dict[str, set[str]]:
    graph = defaultdict(set)
    for room, other, rel, module, _ in imports():
        if include_seams or SEAMS.get((room, other)) != (rel, module):
            graph[room].add(other)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, [*path, nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_every_room_has_a_row():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert rooms == set(ALLOWED), rooms ^ set(ALLOWED)


def test_only_the_entry_points_import_the_command_line():
    importers = {room for room, rooms in room_imports(include_seams=True).items() if "cli" in rooms}
    assert importers == {"(top)"}, importers  # grpolab/__main__.py


def test_rooms_import_only_what_they_may():
    found = room_imports()
    for room in found.keys() - {"(top)"}:
        assert found[room] <= ALLOWED[room], (room, found[room] - ALLOWED[room])


def test_the_allowed_rows_form_no_cycle():
    assert find_cycle(ALLOWED) is None


def test_no_import_cycle_between_rooms():
    assert find_cycle(room_imports()) is None


def test_each_seam_is_one_lazy_import_at_its_named_place():
    for (room, other), (rel, module) in SEAMS.items():
        sites = [(r, m, top) for rm, o, r, m, top in imports() if (rm, o) == (room, other)]
        assert sites == [(rel, module, False)], sites


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"train": {"rewards"}, "rewards": {"train"}}) == ["rewards", "train", "rewards"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_architecture_page_shows_the_allowed_imports():
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    table = text.split("<!-- allowed-imports -->")[1].split("<!-- /allowed-imports -->")[0]
    rows = [line.strip("|").split("|") for line in table.strip().splitlines()[2:]]
    shown = {room.strip(): {r.strip() for r in may.split(",") if r.strip()} for room, may in rows}
    assert shown == ALLOWED


# Test folders that are not package rooms: the whole-repository checks (this file, the docs, the
# lock, the GPU check) and the data the tests read.
NOT_ROOMS = {"repo", "data", "malformed", "recipes"}


def misfiled_tests(tests: Path, package: Path) -> list[str]:
    """Test files that do not sit at tests/<room>/test_<module>[_topic].py for a module of that room."""
    wrong = [f"{p.name}: at the top of tests/" for p in tests.glob("test_*.py")]
    for folder in sorted(p for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        if folder.name in NOT_ROOMS:
            continue
        room = package / folder.name
        if not room.is_dir():
            wrong.append(f"{folder.name}/: no room grpolab/{folder.name}")
            continue
        modules = {p.stem for p in room.glob("*.py")} | {p.name for p in room.iterdir() if p.is_dir()}
        for test in sorted(folder.glob("test_*.py")):
            name = test.stem.removeprefix("test_")
            if not any(name == m or name.startswith(m + "_") for m in modules - {"__init__"}):
                wrong.append(f"{folder.name}/{test.name}: names no module of grpolab/{folder.name}")
    return wrong


def test_tests_mirror_the_package():
    assert misfiled_tests(REPO_ROOT / "tests", PACKAGE) == []


def test_the_mirror_check_finds_misfiled_tests(tmp_path):
    (tmp_path / "pkg" / "train").mkdir(parents=True)
    (tmp_path / "pkg" / "train" / "data.py").touch()
    for rel in ["test_loose.py", "train/test_data_files.py", "train/test_dataset.py", "cluster/test_x.py"]:
        (tmp_path / "tests" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tests" / rel).touch()
    assert misfiled_tests(tmp_path / "tests", tmp_path / "pkg") == [
        "test_loose.py: at the top of tests/",
        "cluster/: no room grpolab/cluster",
        "train/test_dataset.py: names no module of grpolab/train",
    ]
