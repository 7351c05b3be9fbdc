"""The seed's import path: `from configs.grpo_config import GRPOConfigLoader`."""

from grpolab.config import ConfigError, GRPOConfigLoader

__all__ = ["ConfigError", "GRPOConfigLoader"]
