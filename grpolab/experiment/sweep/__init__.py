"""`grpolab sweep SWEEP.yaml`: one config file per trial (named after the base config and the
values it changes, made through the loader so the base file's comments stay and changes are
marked), each trained as `python -m grpolab train --config <trial file>`, then compared.

spec.py reads and checks the sweep file, strategies.py picks the trials (grid, random, optuna),
runner.py is the trial loop, backends.py says where runs execute (here, N at once, SLURM).
The SWEEP.yaml format is documented in configs/sweeps/example_sweep.yaml."""

from .backends import LocalBackend, SbatchBackend, SlurmOptions, SubmititBackend, slurm_backend
from .runner import TRAIN_COMMAND, Trial, make_trial, make_trials, run_sweep, write_trial
from .spec import Range, Sweep, SweepSpec, load_sweep
from .strategies import grid, sample_random, suggest_optuna, trial_stem, value_text

__all__ = [
    "TRAIN_COMMAND",
    "LocalBackend",
    "Range",
    "SbatchBackend",
    "SlurmOptions",
    "SubmititBackend",
    "Sweep",
    "SweepSpec",
    "Trial",
    "grid",
    "load_sweep",
    "make_trial",
    "make_trials",
    "run_sweep",
    "sample_random",
    "slurm_backend",
    "suggest_optuna",
    "trial_stem",
    "value_text",
    "write_trial",
]
