"""The package's rooms depend on each other in one direction: the command line sits on top and
nothing imports it; the config, runtime facts and run record sit at the bottom and import no
training, launching or experiment code (so config commands stay free of torch)."""

from __future__ import annotations

import ast
from collections import defaultdict

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "grpolab"
# room -> the other rooms it may import
ALLOWED = {
    "config": {"runtime"},
    "runtime": {"config"},
    "run": {"config"},
    "launch": {"config", "run", "runtime"},
    "experiment": {"config", "run", "runtime"},
}


def room_imports() -> dict[str, set[str]]:
    found = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        room = parts[0] if len(parts) > 1 else "(top)"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found[room] |= {name.split(".")[1] for name in names if name.startswith("grpolab.")} - {room}
    return found


def test_only_the_entry_points_import_the_command_line():
    importers = {room for room, rooms in room_imports().items() if "cli" in rooms}
    assert importers == {"(top)"}, importers  # grpolab/__main__.py


def test_lower_rooms_import_only_what_they_may():
    found = room_imports()
    for room, allowed in ALLOWED.items():
        assert found[room] <= allowed, (room, found[room] - allowed)
