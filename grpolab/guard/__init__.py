"""The live guard: `grpolab doctor`'s rules run while training, and the run's own cost forecast.

- rules.py     the doctor's metric rules on the rows logged so far (in memory), with `guard:`'s limits
- watch.py     one Watcher per run: which findings first hold at a log step, and what each one does
- forecast.py  projected wall time, finish time and GPU-hours from the first timed optimizer steps

Nothing here imports torch, transformers or trl: the trainer's callback (grpolab.train.guard)
feeds it numbers, and config-only commands can import it.
"""
