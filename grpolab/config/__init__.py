"""grpolab's configuration system. Importing it never imports torch, transformers or trl.

- schema.py          one typed class per YAML section (what a key is, its default and bounds)
- keys.py            dotted keys: split, get, set, flatten, diff
- layers.py          the files a config is built from (presets, --config), origins, KEY=VALUE
- loader.py          GRPOConfigLoader: layering, update_param, save_config
- validate.py        every problem at once: pydantic_errors.py (schema), rules.py (cross-field,
                     recommended ranges), owned.py (TRL fields grpolab sets from its own keys)
- yaml_io.py         reading/writing YAML (round trip, strict YAML 1.2, atomic)
- yaml_edit.py       comment-preserving edits, for save_config
- trl_mapping.py     resolved config -> trl.GRPOConfig keyword arguments
- trl_snapshot.py    TRL's field list (trl_fields.json), checked against the installed trl
- derive.py          derived quantities shown by `grpolab config explain`
"""

from .errors import ConfigError, Problem
from .layers import preset_dir, preset_path
from .loader import GRPOConfigLoader

__all__ = ["ConfigError", "GRPOConfigLoader", "Problem", "preset_dir", "preset_path"]
