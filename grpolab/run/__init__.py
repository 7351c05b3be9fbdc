"""The run record: one directory per run and everything that names, writes or reads it (run_info.json,
metrics.jsonl, provenance, WandB), so the pipeline, launcher, sweep and experiment commands agree on one format."""
