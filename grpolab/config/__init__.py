"""grpolab's configuration system. Importing it never imports torch, transformers or trl.

schema.py (the typed sections; closed_model() for validation) -> layers.py (preset, `base:` chain,
origins) -> refs.py (`${...}`) -> validate.py (pydantic_errors.py, rules.py, owned.py) -> loader.py
(GRPOConfigLoader). Around them: keys.py (dotted keys), yaml_io.py / yaml_edit.py (YAML, comments),
json_schema.py and describe.py (the words for each key), files.py (config new/ls/cp...),
trl_snapshot.py (TRL's field list) and derive.py (batch arithmetic).
"""

from .errors import ConfigError, Problem
from .layers import preset_dir, preset_path
from .loader import GRPOConfigLoader

__all__ = ["ConfigError", "GRPOConfigLoader", "Problem", "preset_dir", "preset_path"]
