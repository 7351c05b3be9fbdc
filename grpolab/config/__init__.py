"""grpolab's configuration system. Importing it never imports torch, transformers or trl.

- schema.py          one typed class per YAML section (what a key is, its default and bounds, the
                     GRPOConfig field it becomes: trl_names()); closed_model(): the same, closed
                     over TRL's field list (validation uses it)
- keys.py            dotted keys: split, get, set, flatten, diff
- layers.py          the files a config is built from (preset, `base:` chain, --config), origins,
                     KEY=VALUE parsing
- refs.py            `${key}` and `${env:NAME,default}` references, resolved before validation
- loader.py          GRPOConfigLoader: layering, from_dict, with_overrides, update_param, save_config
- validate.py        every problem at once: pydantic_errors.py (schema), rules.py (cross-field,
                     recommended ranges), owned.py (TRL fields set by a key of another name, from trl_names)
- yaml_io.py         reading/writing YAML (round trip, strict YAML 1.2, atomic)
- yaml_edit.py       comment-preserving edits (save_config) and the one end-of-line comment walker
- json_schema.py     the JSON Schema editors use (`grpolab config schema`)
- describe.py        the words for each key: explain --key, config keys, preset comments
- files.py           config new / minimize / ls / cp, show --origins
- trl_snapshot.py    TRL's field list (trl_fields.json), checked against the installed trl
- derive.py          `Derived`: batch arithmetic and the reference-model rule (explain, plans)
"""

from .errors import ConfigError, Problem
from .layers import preset_dir, preset_path
from .loader import GRPOConfigLoader

__all__ = ["ConfigError", "GRPOConfigLoader", "Problem", "preset_dir", "preset_path"]
