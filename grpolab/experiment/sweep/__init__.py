"""`grpolab sweep SWEEP.yaml`: one config file per trial (made through the loader: the base file's
comments stay, changes are marked), each trained as `python -m grpolab train --config <file>`, then
compared. spec.py reads the sweep file (format: configs/sweeps/example_sweep.yaml), strategies.py
picks trials, runner.py is the trial loop, backends.py runs them (here, N at once, or SLURM)."""

from .backends import LocalBackend, SlurmOptions, SubmititBackend
from .runner import SweepLoop, run_sweep
from .spec import Sweep, SweepSpec, load_sweep

__all__ = [
    "LocalBackend",
    "SlurmOptions",
    "SubmititBackend",
    "Sweep",
    "SweepLoop",
    "SweepSpec",
    "load_sweep",
    "run_sweep",
]
