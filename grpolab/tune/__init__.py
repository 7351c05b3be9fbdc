"""The tuning assistant: what to change next, and whether it will fit.

- thresholds.py  the one table of limits doctor judges a run by
- doctor.py      `grpolab doctor RUN_DIR`: findings from metrics.jsonl, with --set edits and --write-config
- memory.py      `grpolab config explain --memory`: per-GPU memory by component, and changes that fit
- scale.py       `grpolab config scale FILE --gpus N`: the same experiment on N processes
- edits.py       marks changed lines with the reason they changed

Nothing here imports torch or transformers: it reads configs, config.json and run files
(`grpolab probe`, which samples the model, lives in grpolab.train.probe).
"""
