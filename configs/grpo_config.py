"""The documented import path from a checkout: `from configs.grpo_config import GRPOConfigLoader`.

configs/ is not installed; from the repo root it is importable because the current directory
is on sys.path. Installed code imports `grpolab.config` instead."""

from grpolab.config import ConfigError, GRPOConfigLoader

__all__ = ["ConfigError", "GRPOConfigLoader"]
