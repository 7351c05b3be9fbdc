"""`grpolab config import`: a flat TRL / Open-R1 recipe (what `trl grpo --config` reads) -> a sectioned
grpolab config; a key with no home goes to a commented block, never dropped silently. A grpolab config
layers over a mode preset: where the preset differs from the TRL default a recipe leaves out, the TRL
default is written into the file (`# TRL default`), so the imported config trains the same."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader, Problem
from grpolab.config.errors import did_you_mean
from grpolab.config.keys import set_path, split_key
from grpolab.config.owned import OWNED, REMOVED
from grpolab.config.trl_snapshot import trl_fields
from grpolab.config.yaml_edit import commented
from grpolab.config.yaml_io import (
    dump_yaml,
    inline_yaml,
    line_of,
    parse_yaml_text,
    read_yaml_file,
    to_plain,
    write_atomic,
)
from grpolab.runtime.hardware import HardwareFacts

# TRL's ModelConfig -> model:
MODEL_KEYS = {
    "model_name_or_path": "model.name_or_path",
    "model_revision": "model.revision",
    "dtype": "model.dtype",
    "torch_dtype": "model.dtype",  # the older name of dtype
    "trust_remote_code": "model.trust_remote_code",
    "attn_implementation": "model.attn_implementation",
    "use_peft": "model.lora.enabled",
    **{f"lora_{k}": f"model.lora.{k}" for k in ("r", "alpha", "dropout", "target_modules")},
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
    for k in "num_processes num_machines machine_rank main_process_ip main_process_port mixed_precision".split()
}
# The keys that land in one fixed place, whatever their value.
DIRECT = {**MODEL_KEYS, **SCRIPT_KEYS, **ACCELERATE_KEYS}
# TRL's bundled accelerate configs (`accelerate_config: zero3`) -> cluster.backend / zero_stage.
ACCELERATE_CONFIGS = {
    **{f"zero{i}": {"backend": "deepspeed", "zero_stage": i} for i in (1, 2, 3)},
    **dict.fromkeys(("fsdp1", "fsdp2"), {"backend": "fsdp"}),
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
# Open-R1's reward registry (open_r1/rewards.py) -> grpolab rewards with the same definition.
# `kwargs` name the recipe keys Open-R1 reads for that reward, with Open-R1's defaults.
OPEN_R1_FORMAT = r"(?sm)^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"
OPEN_R1_REWARDS = {
    "accuracy": {"name": "math_verify", "reads_solution": True},
    "format": {"name": "format", "fixed": {"pattern": OPEN_R1_FORMAT, "anchor": "start", "strip": False}},
    "tag_count": {"name": "tag_count"},
    "reasoning_steps": {"name": "reasoning_steps"},
    "length": {"name": "kimi_length", "reads_solution": True},
    "cosine": {
        "name": "cosine_length",
        "reads_solution": True,
        "kwargs": {
            "cosine_min_value_wrong": ("min_value_wrong", 0.0),
            "cosine_max_value_wrong": ("max_value_wrong", -0.5),
            "cosine_min_value_correct": ("min_value_correct", 0.5),
            "cosine_max_value_correct": ("max_value_correct", 1.0),
            "cosine_max_len": ("max_len", 1000),
        },
    },
    "repetition_penalty": {
        "name": "repetition_penalty",
        "kwargs": {"repetition_n_grams": ("ngram_size", 3), "repetition_max_penalty": ("max_penalty", -1.0)},
    },
    "soft_overlong_punishment": {
        "name": "length_penalty",
        "kwargs": {"max_completion_len": ("max_length", 16384), "soft_punish_cache": ("soft_cache", 4096)},
    },
}
# Open-R1 rewards grpolab has no equivalent for: they run code in sandboxes (E2B, Morph, Piston).
OPEN_R1_NO_EQUIVALENT = {
    "code": "runs the completion's code against test cases in an E2B/Morph sandbox",
    "binary_code": "runs the completion's code against test cases in a sandbox",
    "ioi_code": "runs IOI problems in a Piston sandbox",
    "cf_code": "runs Codeforces problems in a Piston sandbox",
    "code_format": "checks a fenced code block in the recipe's language",
}
REWARD_KWARG_KEYS = {key for spec in OPEN_R1_REWARDS.values() for key in spec.get("kwargs", {})}
REWARD_KEYS = {"reward_funcs", "reward_weights", "reward_model_name_or_path", *REWARD_KWARG_KEYS}
# Known TRL keys with no grpolab equivalent, and why.
UNSUPPORTED = {
    "bnb_4bit_quant_storage": "model.quantization has load_in_4bit/8bit, quant_type, compute_dtype, double_quant only",
    **dict.fromkeys(
        ("lora_task_type", "use_rslora", "use_dora", "lora_modules_to_save", "lora_target_parameters"),
        "model.lora has enabled, r, alpha, dropout and target_modules only",
    ),
    "dataset_streaming": "grpolab loads the dataset whole (no streaming)",
    "datasets": "dataset mixtures are not supported; set data.dataset",
}
# TRL's ModelConfig quantization keys -> model.quantization (QLoRA needs use_peft).
QUANT_KEYS = {
    "load_in_4bit": "load_in_4bit",
    "load_in_8bit": "load_in_8bit",
    "bnb_4bit_quant_type": "quant_type",
    "use_bnb_nested_quant": "double_quant",
}
# model_init_kwargs entries that the model: section covers.
INIT_KWARGS = {k: MODEL_KEYS[k] for k in ("dtype", "torch_dtype", "trust_remote_code", "attn_implementation")}
INIT_KWARGS["revision"] = "model.revision"
# Resolved from the hardware, the run directory or the rewards list: never pinned.
NOT_PINNED = {"bf16", "use_cpu", "use_vllm", "report_to", "output_dir", "reward_weights", "activation_checkpointing"}
ORDER = "mode output_dir model data rewards training grpo generation logging cluster env".split()


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
                with contextlib.suppress(ValueError):
                    return cast(value)
    return value


class _Converter:
    def __init__(self, recipe: dict, origin: str, gpus: int | None = None, vllm_gpus: int = 0):
        self.recipe, self.origin, self.gpus, self.vllm_gpus = recipe, origin, gpus, vllm_gpus
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

    def error(self, key: str, message: str, fix: str | None = None) -> ConfigError:
        return ConfigError.of(key, message, fix, self.origin)

    def convert(self) -> None:
        fields = trl_fields()
        for key, value in self.recipe.items():
            if key in REWARD_KEYS or self.convert_special(key, value):
                continue  # the rewards together, below
            if key in DIRECT:
                self.put(key, DIRECT[key], value)
            elif key in UNSUPPORTED:
                self.skip(key, value, UNSUPPORTED[key])
            elif key in REMOVED:
                self.skip(key, value, REMOVED[key].why)
            elif key in OWNED and not OWNED[key].key:
                self.skip(key, value, f"grpolab sets it through {OWNED[key].via}")
            elif key in OWNED or key in fields["grpo"] or key in fields["training"]:
                kinds = (fields["grpo"].get(key) or fields["training"].get(key) or {"kinds": ["any"]})["kinds"]
                self.put(key, _route(key), _coerce(value, kinds))
            else:
                why = "not a GRPOConfig, TrainingArguments, ModelConfig or script argument grpolab maps"
                hint = did_you_mean(key, [*DIRECT, *fields["grpo"], *fields["training"]])
                self.skip(key, value, why + hint.replace(" Did you mean", "; did you mean"))
        self.convert_rewards()
        self.convert_world()

    def convert_special(self, key: str, value) -> bool:
        """The keys whose grpolab home depends on their value or on other keys; True when handled."""
        if key in QUANT_KEYS:
            if self.recipe.get("use_peft") is True:
                self.put(key, f"model.quantization.{QUANT_KEYS[key]}", value)
            else:
                self.skip(key, value, "quantized weights train only through LoRA: the recipe has no use_peft: true")
        elif key == "num_processes" and self.gpus is not None:
            self.skip(key, value, f"--gpus {self.gpus} --vllm-gpus {self.vllm_gpus} set cluster.num_processes")
        elif key == "env":
            if not isinstance(value, dict):
                raise self.error("env", "must be a mapping of environment variables (TRL refuses anything else).")
            self.put(key, "env", {str(k): str(v) for k, v in value.items()})  # TRL exports str(value)
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
        elif key == "warmup_ratio" and isinstance(value, (int, float)) and 0 <= value < 1:
            if self.recipe.get("warmup_steps"):
                return False
            self.put(key, "training.warmup_steps", float(value))  # a float in [0, 1) is a ratio
        else:
            return False
        return True

    def convert_world(self) -> None:
        """`--gpus N --vllm-gpus K`: N - K training processes (K GPUs serve vLLM), validated for that world."""
        if self.gpus is None:
            return
        self.put("--gpus", "cluster.num_processes", self.gpus - self.vllm_gpus)
        if self.vllm_gpus:
            if self.recipe.get("vllm_mode") == "colocate":
                raise self.error(
                    "vllm_mode",
                    f"is colocate (vLLM inside the training processes), but --vllm-gpus {self.vllm_gpus} "
                    "reserves GPUs for a vLLM server.",
                    "drop --vllm-gpus for colocate, or set `vllm_mode: server` in the recipe",
                )
            self.put("--vllm-gpus", "cluster.use_vllm", True)
            self.put("--vllm-gpus", "cluster.vllm_mode", "server")

    def convert_rewards(self) -> None:
        funcs, model = self.recipe.get("reward_funcs"), self.recipe.get("reward_model_name_or_path")
        funcs = [funcs] if isinstance(funcs, str) else list(funcs or [])
        count = len(funcs) + bool(model)
        weights = self.recipe.get("reward_weights")
        weights = [1.0] * count if weights is None else weights
        if not isinstance(weights, list) or len(weights) != count:
            given = len(weights) if isinstance(weights, list) else "no list of"
            raise self.error(
                "reward_weights", f"has {given} weights for {count} rewards.", "give one weight per reward"
            )
        rewards, missing, reads_solution = [], [], False
        if model:  # TRL scores the reward model first, so its weight is the first one
            rewards.append({"model": model, "weight": float(weights[0])})
            self.mapped["reward_model_name_or_path"] = ["rewards"]
        for name, weight in zip(funcs, weights[bool(model) :]):
            if name in OPEN_R1_REWARDS:  # with the recipe keys Open-R1 reads for it
                entry = OPEN_R1_REWARDS[name]
                kwargs = dict(entry.get("fixed", {}))
                for key, (kwarg, default) in entry.get("kwargs", {}).items():
                    kwargs[kwarg] = self.recipe.get(key, default)
                spec = {"name": entry["name"], **({"kwargs": kwargs} if kwargs else {})}
                reads_solution |= entry.get("reads_solution", False)
            elif name in OPEN_R1_NO_EQUIVALENT:
                missing.append(f"{name} (Open-R1: {OPEN_R1_NO_EQUIVALENT[name]})")
                continue
            elif name in TRL_REWARDS:
                spec = dict(TRL_REWARDS[name])
            elif isinstance(name, str) and re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", name):
                spec = {"name": ":".join(name.rsplit(".", 1))}  # TRL's dotted import path -> module:function
            else:
                missing.append(f"{name} (neither an Open-R1 nor a TRL reward name, nor a dotted import path)")
                continue
            rewards.append({"name": spec.pop("name"), "weight": float(weight), **spec})  # then kwargs, if any
        if missing:
            # Writing the config without them would train a different reward (the preset's): refuse.
            raise self.error(
                "reward_funcs",
                f"{len(missing)} reward(s) have no grpolab equivalent: {'; '.join(missing)}.",
                "write each as a Python reward and list it by its dotted import path (my_rewards.code_reward), "
                "or remove it from reward_funcs and reward_weights",
            )
        if reads_solution and "answer" not in self.data.get("data", {}).get("columns", {}).values():
            # Open-R1's math rewards read `solution`; grpolab's read `answer`.
            self.data.setdefault("data", {}).setdefault("columns", {})["solution"] = "answer"
            self.mapped.setdefault("reward_funcs", []).append("data.columns")
        if rewards:
            self.data["rewards"] = rewards
            self.mapped["reward_funcs"] = ["rewards"]
            if "reward_weights" in self.recipe:
                self.mapped["reward_weights"] = ["rewards"]
            for key in REWARD_KWARG_KEYS & set(self.recipe):
                self.mapped[key] = ["rewards"]

    def guess_mode(self) -> str:
        r = self.recipe
        cluster = (
            (self.gpus or 0) > 1
            or r.get("use_vllm") is True
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


def _pins(conv: _Converter, mode: str) -> dict:
    """TRL defaults for the fields the recipe leaves out and the mode preset would change."""
    set_by_recipe = {*conv.recipe} | {d.rpartition(".")[2] for targets in conv.mapped.values() for d in targets}
    if "activation_checkpointing" in set_by_recipe:
        set_by_recipe.add("gradient_checkpointing")
    loader = GRPOConfigLoader.from_dict({"mode": mode, **conv.data})
    # A machine with nothing on it: the pins come from the recipe and TRL's defaults, never from the
    # hardware the import happens to run on (those fields are NOT_PINNED anyway).
    kwargs = loader.trl_kwargs(facts=HardwareFacts())
    # transformers 5 renamed gradient_checkpointing; the grpolab key keeps the old name.
    kwargs["gradient_checkpointing"] = loader.config.training.gradient_checkpointing
    fields = trl_fields()
    pins = {}
    for key, value in kwargs.items():
        spec = fields["grpo"].get(key) or fields["training"].get(key)
        if spec is None or key in NOT_PINNED or key in set_by_recipe or spec["default"] == value:
            continue
        # TRL's None for generation_batch_size: derived from the batch size, as grpolab's auto
        default = "auto" if spec["default"] is None and key == "generation_batch_size" else spec["default"]
        if default is not None:
            pins[_route(key)] = (default, value)
    return pins


def import_recipe(path, mode: str | None = None, gpus: int | None = None, vllm_gpus: int = 0) -> Imported:
    """`gpus`/`vllm_gpus` (`--gpus N --vllm-gpus K`): validated for N - K training processes."""
    path = Path(path)
    if gpus is not None and not 0 <= vllm_gpus < gpus:
        message = f"{vllm_gpus} of {gpus} GPUs for vLLM leaves {gpus - vllm_gpus} for training."
        raise ConfigError.of("--vllm-gpus", message, "keep at least one GPU for training: --vllm-gpus below --gpus")
    tree = read_yaml_file(path)
    conv = _Converter(to_plain(tree, str(path), tree), str(path), gpus, vllm_gpus)
    conv.convert()
    mode = mode or conv.guess_mode()
    try:
        pins = _pins(conv, mode)
        comments = {dotted: f"from `{key}`" for dotted, key in conv.renamed.items()}
        for dotted, (default, preset_value) in pins.items():
            set_path(conv.data, split_key(dotted), default)
            comments[dotted] = f"TRL default (the {mode} preset has {inline_yaml(preset_value)})"
        header = (
            f"# Imported from {path} by `grpolab config import` (flat TRL recipe -> grpolab sections).\n"
            f"# It layers over the {mode} preset; where the preset differs from TRL's defaults and the\n"
            "# recipe says nothing, the TRL default is written here (`# TRL default`).\n"
        )
        data = {"mode": mode, **conv.data}
        data = {key: data[key] for key in sorted(data, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))}
        text = header + dump_yaml(commented(data, comments))
        if conv.unmapped:
            text += "\n# Not imported: no grpolab equivalent (kept for reference)\n"
            text += "".join(f"# {key}: {inline_yaml(value)}  # {why}\n" for key, value, why in conv.unmapped)
        written = parse_yaml_text(text, name := path.stem + ".yaml")  # the file as written must load
        GRPOConfigLoader.from_dict(to_plain(written, name, written))
    except ConfigError as exc:
        raise _explain(exc, conv, tree, path) from None
    return Imported(text, mode, conv.mapped, conv.unmapped, pins)


def _explain(exc: ConfigError, conv: _Converter, tree, path: Path) -> ConfigError:
    """Point a validation problem at the recipe key it came from."""
    back = {dotted: key for key, targets in conv.mapped.items() for dotted in targets}
    problems = []
    for p in exc.problems:
        key = next((k for d, k in back.items() if p.key == d or p.key.startswith((f"{d}.", f"{d}["))), None)
        line = line_of(tree, key) if key else None
        where = f"{path}:{line}" if line else str(path)
        problems.append(Problem(f"{key} (-> {p.key})" if key else p.key, p.message, p.fix, where))
    return ConfigError(problems)


def write_imported(imported: Imported, out, force: bool = False) -> Path:
    return write_atomic(out, imported.text, overwrite=force)
