"""`grpolab config import`: a flat TRL / Open-R1 recipe (what `trl grpo --config` reads) ->
a sectioned grpolab config. Every key lands in its section or in a commented block of keys
that could not be mapped; nothing is dropped silently.

Keys the recipe leaves out take TRL's defaults in `trl grpo`, but a grpolab config layers
over a mode preset with its own values. Where the preset differs from TRL, the TRL default
is written into the file (marked `# TRL default`), so the imported config trains the same."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.errors import did_you_mean
from grpolab.config.keys import set_path, split_key
from grpolab.config.owned import OWNED, REMOVED
from grpolab.config.trl_snapshot import trl_fields
from grpolab.config.yaml_io import (
    dump_yaml,
    inline_yaml,
    line_of,
    parse_yaml_text,
    read_yaml_file,
    to_plain,
    write_atomic,
)

# TRL's ModelConfig -> model:
MODEL_KEYS = {
    "model_name_or_path": "model.name_or_path",
    "model_revision": "model.revision",
    "dtype": "model.dtype",
    "torch_dtype": "model.dtype",  # the older name of dtype
    "trust_remote_code": "model.trust_remote_code",
    "attn_implementation": "model.attn_implementation",
    "use_peft": "model.lora.enabled",
    "lora_r": "model.lora.r",
    "lora_alpha": "model.lora.alpha",
    "lora_dropout": "model.lora.dropout",
    "lora_target_modules": "model.lora.target_modules",
}
# trl/scripts/grpo.py's script arguments, and the Open-R1 ones with a grpolab home.
SCRIPT_KEYS = {
    "dataset_name": "data.dataset",
    "dataset_config": "data.config_name",
    "dataset_train_split": "data.split",
    "dataset_test_split": "data.eval_split",
    "system_prompt": "data.system_prompt",
    "wandb_project": "logging.project",
    "wandb_entity": "logging.entity",
    "wandb_run_group": "logging.group",
}
# `trl grpo` hands the keys it does not know to `accelerate launch`.
ACCELERATE_KEYS = {
    k: f"cluster.{k}"
    for k in (
        "num_processes",
        "num_machines",
        "machine_rank",
        "main_process_ip",
        "main_process_port",
        "mixed_precision",
    )
}
# TRL's bundled accelerate configs (`accelerate_config: zero3`) -> cluster.backend / zero_stage.
ACCELERATE_CONFIGS = {
    "zero1": {"backend": "deepspeed", "zero_stage": 1},
    "zero2": {"backend": "deepspeed", "zero_stage": 2},
    "zero3": {"backend": "deepspeed", "zero_stage": 3},
    "fsdp1": {"backend": "fsdp"},
    "fsdp2": {"backend": "fsdp"},
    "multi_gpu": {"backend": "ddp"},
}
# trl/scripts/grpo.py's reward registry. get_soft_overlong_punishment is DAPO's soft overlong
# punishment, which is grpolab's built-in length_penalty (with the values TRL's script uses).
TRL_REWARDS = {
    "accuracy_reward": {"name": "trl.rewards:accuracy_reward"},
    "reasoning_accuracy_reward": {"name": "trl.rewards:reasoning_accuracy_reward"},
    "think_format_reward": {"name": "trl.rewards:think_format_reward"},
    "get_soft_overlong_punishment": {"name": "length_penalty", "kwargs": {"max_length": 1280, "soft_cache": 256}},
}
# Known TRL keys with no grpolab equivalent, and why.
UNSUPPORTED = {
    **dict.fromkeys(
        ("load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_quant_storage"),
        "quantized loading is not supported by the model: section",
    ),
    **dict.fromkeys(
        ("lora_task_type", "use_rslora", "use_dora", "lora_modules_to_save", "lora_target_parameters"),
        "model.lora has enabled, r, alpha, dropout and target_modules only",
    ),
    "dataset_streaming": "grpolab loads the dataset whole (no streaming)",
    "datasets": "dataset mixtures are not supported; set data.dataset",
}
# model_init_kwargs entries that the model: section covers.
INIT_KWARGS = {
    "dtype": "model.dtype",
    "torch_dtype": "model.dtype",
    "trust_remote_code": "model.trust_remote_code",
    "revision": "model.revision",
    "attn_implementation": "model.attn_implementation",
}
# Resolved from the hardware, the run directory or the rewards list: never pinned.
NOT_PINNED = {"bf16", "use_cpu", "use_vllm", "report_to", "output_dir", "reward_weights", "activation_checkpointing"}
ORDER = (
    "mode",
    "output_dir",
    "model",
    "data",
    "rewards",
    "training",
    "grpo",
    "generation",
    "logging",
    "cluster",
    "env",
)


@dataclass
class Imported:
    text: str  # the grpolab config file
    mode: str
    mapped: dict = field(default_factory=dict)  # recipe key -> dotted grpolab key(s)
    unmapped: list = field(default_factory=list)  # (recipe key, value, why)
    pinned: dict = field(default_factory=dict)  # dotted key -> (TRL default, the preset's value)


def _coerce(value, kinds: list[str]):
    """TRL's parser turns "1e-6" into a float; do the same for a quoted number in a number field."""
    if isinstance(value, str) and "str" not in kinds:
        for kind, cast in (("int", int), ("float", float)):
            if kind in kinds:
                try:
                    return cast(value)
                except ValueError:
                    pass
    return value


class _Converter:
    def __init__(self, recipe: dict, origin: str):
        self.recipe, self.origin = recipe, origin
        self.data: dict = {}
        self.mapped: dict[str, list[str]] = {}
        self.unmapped: list[tuple[str, object, str]] = []
        self.renamed: dict[str, str] = {}  # dotted -> recipe key, for `# from X` comments

    def put(self, key: str, dotted: str, value) -> None:
        set_path(self.data, split_key(dotted), value)
        self.mapped.setdefault(key, []).append(dotted)
        if dotted.rpartition(".")[2] != key:
            self.renamed[dotted] = key

    def skip(self, key: str, value, why: str) -> None:
        self.unmapped.append((key, value, why))

    def convert(self) -> None:
        fields = trl_fields()
        for key, value in self.recipe.items():
            if key in ("reward_funcs", "reward_weights", "reward_model_name_or_path"):
                continue  # together, below
            if key == "env":
                if not isinstance(value, dict):
                    raise ConfigError(
                        Problem(
                            "env",
                            "must be a mapping of environment variables (TRL refuses anything else).",
                            None,
                            self.origin,
                        )
                    )
                self.put(key, "env", {str(k): str(v) for k, v in value.items()})  # TRL exports str(value)
            elif key in MODEL_KEYS:
                self.put(key, MODEL_KEYS[key], value)
            elif key in SCRIPT_KEYS:
                self.put(key, SCRIPT_KEYS[key], value)
            elif key in ACCELERATE_KEYS:
                self.put(key, ACCELERATE_KEYS[key], value)
            elif key == "accelerate_config" and value in ACCELERATE_CONFIGS:
                for sub, v in ACCELERATE_CONFIGS[value].items():
                    self.put(key, f"cluster.{sub}", v)
            elif key == "dataset_prompt_column" and isinstance(value, str):  # Open-R1: the column holding the prompt
                self.put(key, "data.columns", {value: "prompt"} if value != "prompt" else {})
            elif key == "model_init_kwargs" and isinstance(value, dict):
                for sub, v in value.items():
                    if sub in INIT_KWARGS:
                        self.put(key, INIT_KWARGS[sub], v)
                    else:
                        self.skip(f"model_init_kwargs.{sub}", v, "the model: section has no such setting")
            elif (
                key == "warmup_ratio"
                and isinstance(value, (int, float))
                and 0 <= value < 1
                and not self.recipe.get("warmup_steps")
            ):
                self.put(key, "training.warmup_steps", float(value))  # a float in [0, 1) is a ratio
            elif key in UNSUPPORTED:
                self.skip(key, value, UNSUPPORTED[key])
            elif key in REMOVED:
                self.skip(key, value, REMOVED[key].why)
            elif key in OWNED:
                target = OWNED[key].key
                if target:
                    self.put(
                        key,
                        target,
                        _coerce(
                            value,
                            (fields["grpo"].get(key) or fields["training"].get(key) or {"kinds": ["any"]})["kinds"],
                        ),
                    )
                else:
                    self.skip(key, value, f"grpolab sets it through {OWNED[key].via}")
            elif key in fields["grpo"]:
                self.put(key, f"grpo.{key}", _coerce(value, fields["grpo"][key]["kinds"]))
            elif key in fields["training"]:
                self.put(key, f"training.{key}", _coerce(value, fields["training"][key]["kinds"]))
            else:
                known = [*MODEL_KEYS, *SCRIPT_KEYS, *ACCELERATE_KEYS, *fields["grpo"], *fields["training"]]
                self.skip(
                    key,
                    value,
                    "not a GRPOConfig, TrainingArguments, ModelConfig or script argument grpolab maps"
                    + did_you_mean(key, known).replace(" Did you mean", "; did you mean"),
                )
        self.convert_rewards()

    def convert_rewards(self) -> None:
        funcs = self.recipe.get("reward_funcs")
        weights = self.recipe.get("reward_weights")
        model = self.recipe.get("reward_model_name_or_path")
        funcs = [funcs] if isinstance(funcs, str) else list(funcs or [])
        if model:
            self.skip(
                "reward_model_name_or_path",
                model,
                "grpolab has no reward models, only reward functions; weight "
                f"{inline_yaml(weights[0]) if isinstance(weights, list) and weights else 1.0}",
            )
        if weights is None:
            weights = [1.0] * (len(funcs) + bool(model))
        if not isinstance(weights, list) or len(weights) != len(funcs) + bool(model):
            raise ConfigError(
                Problem(
                    "reward_weights",
                    f"has {len(weights) if isinstance(weights, list) else 'no list of'} weights for "
                    f"{len(funcs) + bool(model)} rewards.",
                    "give one weight per reward",
                    self.origin,
                )
            )
        rewards = []
        for i, (name, weight) in enumerate(zip(funcs, weights[bool(model) :])):
            if name in TRL_REWARDS:
                spec = dict(TRL_REWARDS[name])
            elif isinstance(name, str) and re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", name):
                module, _, func = name.rpartition(".")
                spec = {"name": f"{module}:{func}"}  # TRL's dotted import path -> module:function
            else:
                self.skip(
                    f"reward_funcs[{i}]",
                    name,
                    f"not one of TRL's reward names ({', '.join(TRL_REWARDS)}) nor a dotted import "
                    f"path; weight {inline_yaml(weight)}",
                )
                continue
            rewards.append(
                {
                    "name": spec["name"],
                    "weight": float(weight),
                    **({"kwargs": spec["kwargs"]} if "kwargs" in spec else {}),
                }
            )
        if rewards:
            self.data["rewards"] = rewards
            self.mapped["reward_funcs"] = ["rewards"]
            if "reward_weights" in self.recipe:
                self.mapped["reward_weights"] = ["rewards"]

    def guess_mode(self) -> str:
        r = self.recipe
        cluster = (
            r.get("use_vllm") is True
            or "accelerate_config" in r
            or (isinstance(r.get("num_processes"), int) and r["num_processes"] > 1)
            or (r.get("num_machines") or 1) > 1
        )
        return "cluster" if cluster else "local"


def _route(key: str) -> str:
    """Where a TRL field lives in a grpolab config (for pinned defaults)."""
    if key in OWNED and OWNED[key].key:
        return OWNED[key].key
    return f"grpo.{key}" if key in trl_fields()["grpo"] else f"training.{key}"


def _load(text: str, name: str) -> GRPOConfigLoader:
    """Validate a config text through the public loader, as the file `name` would be."""
    tree = parse_yaml_text(text, name)
    return GRPOConfigLoader.from_dict(to_plain(tree, name, tree))


def _pins(conv: _Converter, mode: str) -> dict:
    """TRL defaults for the fields the recipe leaves out and the mode preset would change."""
    set_by_recipe = {dotted.rpartition(".")[2] for targets in conv.mapped.values() for dotted in targets}
    set_by_recipe |= set(conv.recipe)
    if "activation_checkpointing" in set_by_recipe:
        set_by_recipe.add("gradient_checkpointing")
    loader = GRPOConfigLoader.from_dict({"mode": mode, **conv.data})
    kwargs = loader.trl_kwargs()
    # transformers 5 renamed gradient_checkpointing; the grpolab key keeps the old name.
    kwargs["gradient_checkpointing"] = loader.config.training.gradient_checkpointing
    fields = trl_fields()
    pins = {}
    for key, value in kwargs.items():
        spec = fields["grpo"].get(key) or fields["training"].get(key)
        if spec is None or key in NOT_PINNED or key in set_by_recipe or spec["default"] == value:
            continue
        default = spec["default"]
        if default is None and key == "generation_batch_size":
            default = "auto"  # TRL's None: derived from the batch size, as grpolab's auto
        if default is not None:
            pins[_route(key)] = (default, value)
    return pins


def _tree(data: dict, comments: dict[str, str], prefix: str = "") -> CommentedMap:
    out = CommentedMap()
    keys = list(data) if prefix else [k for k in ORDER if k in data] + [k for k in data if k not in ORDER]
    for key in keys:
        value = data[key]
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out[key] = _tree(value, comments, dotted)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out[key] = CommentedSeq(_tree(v, {}, f"{dotted}[]") for v in value)
        else:
            out[key] = value
        if dotted in comments:
            # Two spaces after the value, as in the presets (block values start on the next line).
            indent = 2 * (prefix.count(".") + 1) if prefix else 0
            shown = "" if isinstance(value, (dict, list)) and value else f" {inline_yaml(value)}"
            out.yaml_add_eol_comment(comments[dotted], key, column=indent + len(f"{key}:{shown}") + 2)
    return out


def import_recipe(path, mode: str | None = None) -> Imported:
    path = Path(path)
    tree = read_yaml_file(path)
    recipe = to_plain(tree, str(path), tree)
    conv = _Converter(recipe, str(path))
    conv.convert()
    mode = mode or conv.guess_mode()
    name = path.stem + ".yaml"
    try:
        pins = _pins(conv, mode)
    except ConfigError as exc:
        raise _explain(exc, conv, tree, path) from None
    comments = {dotted: f"from `{key}`" for dotted, key in conv.renamed.items()}
    for dotted, (default, preset_value) in pins.items():
        set_path(conv.data, split_key(dotted), default)
        comments[dotted] = f"TRL default (the {mode} preset has {inline_yaml(preset_value)})"
    header = (
        f"# Imported from {path} by `grpolab config import` (flat TRL recipe -> grpolab sections).\n"
        f"# It layers over the {mode} preset; where the preset differs from TRL's defaults and the\n"
        "# recipe says nothing, the TRL default is written here (`# TRL default`).\n"
    )
    text = header + dump_yaml(_tree({"mode": mode, **conv.data}, comments))
    if conv.unmapped:
        text += "\n# Not imported: no grpolab equivalent (kept for reference)\n"
        text += "".join(f"# {key}: {inline_yaml(value)}  # {why}\n" for key, value, why in conv.unmapped)
    try:
        _load(text, name)  # the file as written must load
    except ConfigError as exc:
        raise _explain(exc, conv, tree, path) from None
    return Imported(text, mode, conv.mapped, conv.unmapped, pins)


def _explain(exc: ConfigError, conv: _Converter, tree, path: Path) -> ConfigError:
    """Point a validation problem at the recipe key it came from."""
    back = {dotted: key for key, targets in conv.mapped.items() for dotted in targets}
    problems = []
    for p in exc.problems:
        key = next(
            (k for d, k in back.items() if p.key == d or p.key.startswith(d + ".") or p.key.startswith(d + "[")), None
        )
        line = line_of(tree, key) if key else None
        where = f"{path}:{line}" if line else str(path)
        problems.append(Problem(f"{key} (-> {p.key})" if key else p.key, p.message, p.fix, where))
    return ConfigError(problems)


def write_imported(imported: Imported, out, force: bool = False) -> Path:
    return write_atomic(out, imported.text, overwrite=force)
