"""The tuning assistant: what to change next (doctor), whether it will fit (memory), the same run on
N processes (scale). Nothing here imports torch or transformers: it reads configs, config.json and
run files (`grpolab probe`, which samples the model, lives in grpolab.train.probe)."""
