"""`grpolab sweep SWEEP.yaml` (format: configs/sweeps/example_sweep.yaml): one config file per trial, made
through the loader (the base's comments stay, changes are marked), each trained by `grpolab train`, then
compared. spec.py reads the file, strategies.py picks trials, runner.py loops, backends.py runs them."""

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
