"""grpolab's configuration system. Importing it never imports torch, transformers or trl.

- schema.py      one typed class per YAML section (what a key is, its default and bounds)
- yaml_io.py     reading/writing YAML (round trip, strict, atomic)
- validate.py    key checks, cross-field rules for a world size, recommended-range warnings
- loader.py      GRPOConfigLoader: layering, update_param, save_config
- trl_mapping.py resolved config -> trl.GRPOConfig keyword arguments
- derive.py      derived quantities shown by `grpolab config explain`
"""

from .errors import ConfigError, Problem
from .loader import GRPOConfigLoader, preset_path

__all__ = ["ConfigError", "GRPOConfigLoader", "Problem", "preset_path"]
