"""The live guard: `grpolab doctor`'s rules run while training, and the run's own cost forecast.
Nothing here imports torch, transformers or trl: the trainer's callback (grpolab.train.guard) feeds it
numbers, and config-only commands can import it."""
