"""grpolab's configuration system. Importing it never imports torch, transformers or trl.

schema -> layers (preset, `base:` chain, origins) -> refs (`${...}`) -> validate -> loader (GRPOConfigLoader)."""

from .errors import ConfigError, Problem
from .layers import preset_dir, preset_path
from .loader import GRPOConfigLoader

__all__ = ["ConfigError", "GRPOConfigLoader", "Problem", "preset_dir", "preset_path"]
