"""The run record: one directory per run (run_dir.py), what it records (record.py), its metrics
(metrics.py), where the run came from (provenance.py) and its WandB run (wandb_run.py).

Everything that names, writes or reads a run directory goes through this package, so the
training pipeline, the launcher, the sweep and the experiment commands agree on one format."""
