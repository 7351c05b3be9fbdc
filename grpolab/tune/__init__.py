"""The tuning assistant: what to change next, and whether it will fit.

- thresholds.py  the one table of limits doctor judges a run by
- doctor.py      `grpolab doctor RUN_DIR`: findings from metrics.jsonl, with --set edits and --write-config
- memory.py      `grpolab config explain --memory`: per-GPU memory by component, and changes that fit
- probe.py       `grpolab probe CONFIG`: pass rates and zero-spread groups of the base model, before training
- scale.py       `grpolab config scale FILE --gpus N`: the same experiment on N processes
- edits.py       marks changed lines with the reason they changed

Only probe imports torch/transformers; the rest read configs, config.json and run files.
"""
