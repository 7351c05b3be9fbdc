"""Re-export of grpolab/run/wandb_run.py under the name the training pipeline imports today."""

from grpolab.run.wandb_run import logged_in, start_wandb, wandb_enabled

__all__ = ["logged_in", "start_wandb", "wandb_enabled"]
