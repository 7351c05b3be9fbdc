"""The environment the suite runs in is requirements.lock, exactly.

`make venv` installs the lock with uv; a `.venv` that drifted from it (an old venv, a hand
`pip install -U`, a lock changed by `make lock` but not installed) fails here with every package
that differs and the command that fixes it, instead of failing somewhere else for a reason that
names no package.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    return {normalize(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def test_the_lock_is_a_full_pinned_set():
    pins = locked()
    assert {"trl", "transformers", "accelerate", "pydantic", "ruamel-yaml", "deepspeed", "pytest"} <= set(pins)
    # torch is kept as installed (a GPU user's CUDA build); the lock has its dependencies, not it.
    assert "torch" not in pins and "sympy" in pins
    lines = [line for line in LOCK.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert all(PIN.match(line) for line in lines), [line for line in lines if not PIN.match(line)]


# Installed besides the lock by `make venv`: the torch that was there (a CUDA build brings its own
# nvidia-* and triton packages), the installers, and grpolab itself.
KEPT = re.compile(r"^(torch|triton|nvidia-.*|pip|uv|grpolab)$")


def drift(have: dict[str, str], pins: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """name -> (installed, locked) for every package where the environment is not the lock."""
    out = {name: (have.get(name), version) for name, version in pins.items() if have.get(name) != version}
    out |= {name: (version, None) for name, version in have.items() if name not in pins and not KEPT.match(name)}
    return out


def message(found: dict) -> str:
    return (
        "this environment is not requirements.lock:\n"
        + "\n".join(
            f"  {n}: installed {got or 'nothing'}, locked {want or 'nothing'}"
            for n, (got, want) in sorted(found.items())
        )
        + "\nFix: `make venv` (installs the lock exactly; `rm -rf .venv && make venv` for a clean one)"
    )


def test_installed_packages_equal_the_lock():
    found = drift(installed(), locked())
    assert not found, message(found)


def test_every_kind_of_drift_is_named_with_the_fix():
    pins = {"transformers": "5.24.0", "accelerate": "1.15.0"}
    have = {"transformers": "5.25.0", "kernels": "0.19.1", "torch": "2.13.0+cpu", "nvidia-cublas": "13.0", "pip": "23"}
    found = drift(have, pins)
    assert found == {"transformers": ("5.25.0", "5.24.0"), "accelerate": (None, "1.15.0"), "kernels": ("0.19.1", None)}
    text = message(found)
    assert "transformers: installed 5.25.0, locked 5.24.0" in text
    assert "accelerate: installed nothing, locked 1.15.0" in text
    assert "kernels: installed 0.19.1, locked nothing" in text and "Fix: `make venv`" in text
