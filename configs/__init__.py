"""The documented import path from a checkout: `from configs.grpo_config import GRPOConfigLoader`.

configs/ is not installed as a package. `make venv` puts the checkout on the venv's path (a
`grpolab_checkout.pth` file), so a script anywhere imports it with the venv's Python; elsewhere
it is importable from the checkout's root. Installed code imports `grpolab.config` instead."""

from grpolab.config import ConfigError, GRPOConfigLoader

__all__ = ["ConfigError", "GRPOConfigLoader"]
