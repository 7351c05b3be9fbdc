"""The experiment loop from the terminal: list runs, compare them, sweep configs, write
outcomes back into config files, import TRL recipes. Reads run directories only (see
grpolab/run/); nothing here imports torch, transformers or trl."""
