"""Run records: the run directory (run_dir.py) and experiment trackers (wandb_run.py)."""
