"""Training on TRL: the stages of a run, from the layered config to the saved model."""
