"""`grpolab sweep SWEEP.yaml`: one config file per trial (named after the base config and the
values it changes, made through the loader so the base file's comments stay and changes are
marked), each trained as `python -m grpolab train --config <trial file>`, then compared.

spec.py reads and checks the sweep file, strategies.py picks the trials (grid, random, optuna),
runner.py is the trial loop, backends.py says where runs execute (here, N at once, SLURM through
submitit). The SWEEP.yaml format is documented in configs/sweeps/example_sweep.yaml."""

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
