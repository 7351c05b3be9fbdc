"""The config schema: one typed class per YAML section; defaults are TRL's unless a comment says why.
`training:` and `grpo:` also take any real TrainingArguments / GRPOConfig field; closed_model() closes them
over TRL's field list, so pydantic reports every unknown, misplaced or mistyped key (and gives the JSON Schema)."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import types
import typing
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .errors import did_you_mean, shown
from .trl_snapshot import trl_fields

BUILTIN_REWARDS = (
    *("exact_match", "numeric_match", "format", "length_penalty", "math_verify", "tag_count", "reasoning_steps"),
    *("repetition_penalty", "cosine_length", "kimi_length"),
)
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
REPORT_TO = ("wandb", "tensorboard", "mlflow", "trackio", "comet_ml", "clearml", "dvclive", "swanlab", "none", "all")
_USER_REWARD = re.compile(r"^~?[\w./\\-]+(\.py)?:[A-Za-z_]\w*$")  # `~/x.py:f`: see expand_home
# `module:object` or `path/to/file.py:object` for data transforms, tools, environments and rollouts.
IMPORT_SPEC = _USER_REWARD.pattern
_DTYPES = Literal["auto", "float32", "bfloat16", "float16"]
# The local data file formats (train/data.py reads them); such a file has one split, all of it.
DATA_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# The descriptions a source of `data.datasets` shares with the single-source keys of `data:`.
_DATASET = "builtin:NAME, a Hub dataset id, or a .jsonl/.json/.csv/.parquet path"
_TRANSFORM = "module:function or file.py:function mapping a row to `prompt` plus the columns rewards read"
# `data.eval_split`, `data.eval_samples` and `data.eval_every_steps` are the older names of three
# `eval:` keys, kept as documented aliases: an `eval:` key left null takes its alias's value once,
# at validation, so every reader reads `eval.*` only.
EVAL_ALIASES = {
    "eval.split": "data.eval_split",
    "eval.max_prompts": "data.eval_samples",
    "eval.every_steps": "data.eval_every_steps",
}


def expand_home(value):
    """`~/x` (or `~user/x`) as the shell means it. The one normalizer of every path-valued key (UserPath),
    from a file, `--set`, a flag or a base: `output_dir: ~/runs` once made a folder named `~`."""
    return os.path.expanduser(value) if isinstance(value, str) and value.startswith("~") else value


# A key whose value is (or may be) a path on this machine. A Hub id, `builtin:NAME` or
# `module:function` never starts with `~`, so those are left as they are.
UserPath = Annotated[str, BeforeValidator(expand_home)]
# `module:function` or `path/file.py:function`. The pattern sits inside the normalizer, so that it
# checks the expanded path and the JSON schema (editors) still shows it.
ImportPath = Annotated[str, Field(pattern=IMPORT_SPEC), BeforeValidator(expand_home)]


def TrlField(*args, trl: str | None = None, **kwargs):
    """A field that becomes GRPOConfig's field `trl` (default: its own name); trl_names() reads them.
    Every field of `training:` and `grpo:` is TRL's own under its own name."""
    return Field(*args, json_schema_extra={"trl": trl or True}, **kwargs)


class Section(BaseModel):
    # strict: a YAML string is never silently turned into a number or a bool.
    # allow_inf_nan=False: `.inf` and `.nan` are never valid settings.
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)


class PassThroughSection(Section):
    # Other real TRL fields are kept here as extras; closed_model() checks them first.
    model_config = ConfigDict(extra="allow", strict=True, validate_default=True, allow_inf_nan=False)


class LoraConfig(Section):
    enabled: bool = Field(False, description="train a LoRA adapter (peft) instead of all weights")
    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="scaling: the update is multiplied by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: str | list[str] = Field("all-linear", description="module names to adapt, or all-linear")


class QuantizationConfig(Section):
    load_in_4bit: bool = Field(False, description="4-bit weights (QLoRA)")
    load_in_8bit: bool = Field(False, description="8-bit weights")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type: nf4 (QLoRA's) or fp4")
    compute_dtype: _DTYPES = Field("auto", description="matmul dtype of the 4-bit layers; auto = model.dtype")
    double_quant: bool = Field(True, description="quantize the quantization constants too (saves ~0.4 bit/param)")

    @model_validator(mode="after")
    def _one_width(self):
        if self.load_in_4bit == self.load_in_8bit:
            raise ValueError(
                "set exactly one of `load_in_4bit: true` or `load_in_8bit: true` (QLoRA uses load_in_4bit)"
            )
        return self


class ModelConfig(Section):
    name_or_path: UserPath | None = Field(None, description="Hub id or local path; null = the embedded demo model")
    dtype: _DTYPES = Field("auto", description="auto = bfloat16 on a bf16 GPU, float32 on CPU")
    trust_remote_code: bool = TrlField(False, description="run model code from the Hub repo (off unless you trust it)")
    revision: str | None = Field(None, description="Hub branch, tag or commit")
    attn_implementation: str | None = Field(
        None, description="eager, sdpa, flash_attention_2 ...; null = transformers' choice"
    )
    lora: LoraConfig = Field(default_factory=LoraConfig)
    quantization: QuantizationConfig | None = Field(
        None, description="load the base model quantized with bitsandbytes (QLoRA; needs model.lora.enabled)"
    )

    @model_validator(mode="after")
    def _quantization_trains_an_adapter(self):
        # A quantized base cannot be trained itself: only a LoRA adapter on top of it learns.
        if self.quantization is not None and not self.lora.enabled:
            raise ValueError(
                "model.quantization loads frozen 4/8-bit weights, which only a LoRA adapter can train. "
                "Fix: set `model.lora.enabled: true` (QLoRA), or remove `model.quantization`"
            )
        return self


class DataSource(Section):
    path: UserPath = Field(description=_DATASET)
    name: str | None = Field(None, description="label in the plan and per-source metrics; null = from the path")
    config_name: str | None = Field(None, description="Hub dataset configuration (subset)")
    split: str = Field("train", description="split to take rows from")
    weight: float = Field(
        1.0, gt=0, description="share of this source's rows in the mixture: 0.5 = half of them, 2 = each twice"
    )
    columns: dict[str, str] = Field(default_factory=dict, description="rename this source's columns")
    system_prompt: str | None = Field(None, description="system message for this source's prompts")
    max_samples: int | None = Field(None, ge=1, description="rows taken from this source before weighting")
    transform: ImportPath | None = Field(None, description=_TRANSFORM)


class DataConfig(Section):
    dataset: UserPath = Field("builtin:addition", description=_DATASET)
    config_name: str | None = Field(None, description="Hub dataset configuration (subset)")
    split: str = Field("train", description="split to train on")
    eval_split: str | None = Field(
        None, description="held-out split for greedy accuracy before/after training; null = none"
    )
    eval_samples: int = Field(200, ge=1, description="held-out prompts to score")
    eval_every_steps: int = Field(
        0,
        ge=0,
        description="also score the held-out prompts every N optimizer steps (eval/accuracy); 0 = "
        "before and after only",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="rename source columns, e.g. {question: prompt, solution: answer}"
    )
    system_prompt: str | None = Field(None, description="system message for chat prompts (needs a chat template)")
    max_samples: int | None = Field(None, ge=1, description="use at most this many training rows")
    transform: ImportPath | None = Field(None, description=_TRANSFORM)
    datasets: list[DataSource] | None = Field(
        None,
        min_length=1,
        description="a weighted mixture of sources (replaces data.dataset); shuffled together with training.seed",
    )
    test_size: Annotated[float, Field(gt=0, lt=1)] | Annotated[int, Field(ge=1)] | None = Field(
        None, description="carve an eval split from the training rows: a fraction (0.1) or a count (500)"
    )

    @model_validator(mode="after")
    def _one_eval_source(self):
        if self.test_size is not None and self.eval_split is not None:
            raise ValueError(
                "data.test_size carves the eval rows from the training data, and data.eval_split names another "
                "split: set one. Fix: set `data.eval_split: null` or remove `data.test_size`"
            )
        return self


class HttpReward(Section):
    url: str = Field(description="http(s) endpoint; POST {prompts, completions, columns} -> {rewards: [...]}")
    timeout_s: float = Field(30.0, gt=0, description="seconds per request before it counts as failed")
    retries: int = Field(2, ge=0, description="retries after a timeout, connection error or 5xx, with backoff")
    concurrency: int = Field(4, ge=1, description="requests in flight at once; the batch is split between them")
    headers_env: dict[str, str] = Field(
        default_factory=dict, description="header name -> environment variable holding its value (tokens)"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError(f"`{url}` is not an http(s) URL, e.g. http://127.0.0.1:8000/score.")
        return url


class JudgeReward(Section):
    base_url: str = Field(description="OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1 (vLLM serve)")
    model: str = Field(description="model name the server serves")
    rubric: str | None = Field(
        None, description="instructions to the judge; {prompt} and {completion} (and columns) are filled in"
    )
    rubric_file: UserPath | None = Field(None, description="read the rubric from this text file instead")
    parse: Literal["score_0_10", "yes_no", "regex"] = Field(
        "score_0_10", description="score_0_10 (-> 0..1), yes_no (-> 1/0), or regex (first group -> float)"
    )
    pattern: str | None = Field(None, description="for parse: regex, a pattern whose first group is the score")
    api_key_env: str | None = Field(None, description="environment variable with the API key; null = none")
    concurrency: int = Field(4, ge=1, description="judge requests in flight at once")
    timeout_s: float = Field(60.0, gt=0, description="seconds per judge request")
    retries: int = Field(2, ge=0, description="retries after a timeout, connection error or 5xx")
    max_tokens: int = Field(16, ge=1, description="tokens the judge may answer with")

    @model_validator(mode="after")
    def _rubric_and_pattern(self):
        if (self.rubric is None) == (self.rubric_file is None):
            raise ValueError("give the judge exactly one of `rubric` (text) or `rubric_file` (a path)")
        if self.parse == "regex":
            if not self.pattern:
                raise ValueError("parse: regex needs `pattern`, a regex whose first group is the score")
            try:
                if re.compile(self.pattern).groups < 1:
                    raise ValueError(f"pattern `{self.pattern}` has no group; wrap the score in ( )")
            except re.error as exc:
                raise ValueError(f"pattern `{self.pattern}` is not a valid regex: {exc}") from None
        return self


REWARD_KINDS = ("name", "model", "http", "judge")


class RewardSpec(Section):
    name: UserPath | None = Field(
        None,
        description="built-in name, module:function, path/to/file.py:function, or trl:NAME (TRL's rewards)",
        json_schema_extra={
            "pattern": f"^({'|'.join(BUILTIN_REWARDS)})$|{_USER_REWARD.pattern}",
            "examples": list(BUILTIN_REWARDS),
        },
    )
    model: UserPath | None = Field(None, description="a sequence-classification reward model: Hub id or local path")
    batch_size: int | None = Field(None, ge=1, description="reward model: sequences per forward; null = all")
    dtype: _DTYPES | None = Field(None, description="reward model dtype; null/auto = float32 on CPU, bf16 on GPU")
    device: str | None = Field(None, description="reward model device (cpu, cuda, cuda:1); null = training device")
    http: HttpReward | None = Field(None, description="a reward computed by an HTTP service")
    judge: JudgeReward | None = Field(None, description="an LLM judge over an OpenAI-compatible API")
    weight: float = TrlField(1.0, description="weight in the summed reward", trl="reward_weights")
    kwargs: dict = Field(
        default_factory=dict, description="keyword arguments for the reward (e.g. pattern for format)"
    )

    @model_serializer(mode="wrap")
    def _only_its_own_keys(self, handler):
        # A reward is one kind: the resolved config shows its own keys, not the other kinds' nulls.
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def kind(self) -> str:
        """name, model, http or judge: the one key that says where the reward comes from."""
        return next((k for k in REWARD_KINDS if getattr(self, k) is not None), "name")

    @property
    def label(self) -> str:
        """How the plan, errors and metric names call this reward."""
        if self.kind == "name":
            return self.name
        if self.kind == "model":
            return f"model:{self.model.rstrip('/').rsplit('/', 1)[-1]}"
        if self.kind == "http":
            return f"http:{self.http.url}"
        return f"judge:{self.judge.model}"

    @model_validator(mode="after")
    def _one_kind(self):
        given = [k for k in REWARD_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            what = "none" if not given else ", ".join(given)
            raise ValueError(
                f"a reward is exactly one of `name`, `model`, `http` or `judge` (got {what}). "
                "Fix: split it into one entry per reward, each with its own weight"
            )
        extra = [k for k in ("batch_size", "dtype", "device") if getattr(self, k) is not None]
        if extra and self.model is None:
            raise ValueError(f"{', '.join(extra)} only apply to a reward model (`model:`); remove them here")
        if self.kwargs and self.name is None:
            raise ValueError(
                "kwargs are arguments of a reward function (`name:`); a model, http or judge reward takes its "
                "settings in its own keys. Fix: remove `kwargs` here"
            )
        return self

    @field_validator("name")
    @classmethod
    def _known_or_importable_spec(cls, name: str | None) -> str | None:
        if name is None or name in BUILTIN_REWARDS or _USER_REWARD.match(name):
            return name
        raise ValueError(
            f"unknown reward `{name}`; built-ins are {', '.join(BUILTIN_REWARDS)}, or give `module:function` "
            f"or `path/to/file.py:function`.{did_you_mean(name, BUILTIN_REWARDS)}"
        )


class TrainingConfig(PassThroughSection):
    num_train_epochs: int | float = Field(3, gt=0, description="passes over the training prompts")
    max_steps: int = Field(-1, ge=-1, description="optimizer steps; -1 = derive from num_train_epochs")
    per_device_train_batch_size: int = Field(
        8, ge=1, description="completions (not prompts) per device per micro-step"
    )
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-steps per optimizer step")
    learning_rate: float = Field(1e-6, gt=0, description="peak learning rate (TRL default 1e-6)")
    # int | float: a whole number stays one in the resolved config (`save_steps: 200`, not 200.0);
    # a float below 1 is a ratio, as transformers reads it.
    warmup_steps: int | float = Field(0, ge=0, description="warmup steps; a float in [0, 1) is a ratio of total steps")
    lr_scheduler_type: str = Field("linear", description="linear, cosine, constant, constant_with_warmup ...")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping; 0 = off")
    seed: int = Field(42, description="seed for data order, init and sampling")
    logging_steps: int | float = Field(10, gt=0, description="log every N optimizer steps")
    save_steps: int | float = Field(500, gt=0, description="checkpoint every N optimizer steps")
    save_total_limit: int | None = Field(None, ge=1, description="keep at most N checkpoints")
    # Differs from TRL (True): it makes steps slower (bench/speed_choices.py) and small models do not need it;
    # the cluster preset turns it on.
    # transformers 5 renamed the TRL field; the grpolab key keeps the name recipes use.
    gradient_checkpointing: bool = TrlField(
        False, description="trade compute for memory", trl="activation_checkpointing"
    )
    bf16: bool | Literal["auto"] = Field(
        "auto",
        description="auto = bf16 where the hardware computes it natively (bf16 GPUs, CPUs with "
        "AVX512-BF16/AMX), else fp32",
    )
    use_liger_kernel: bool | Literal["auto"] = Field(
        False,
        description="Liger fused kernels (less memory); auto = on when liger-kernel is installed and "
        "training runs on a GPU",
    )


class GRPOSection(PassThroughSection):
    generation_batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="completions per generation round, all processes; auto = "
        "per_device_train_batch_size x world size x gradient_accumulation_steps",
    )
    steps_per_generation: int | None = Field(
        None, ge=1, description="micro-steps per generation round (exclusive with generation_batch_size)"
    )
    num_generations: int = Field(8, ge=2, description="completions per prompt (the group)")
    beta: float = Field(0.0, ge=0, description="KL penalty coefficient; 0 = no reference model, no KL")
    num_iterations: int = Field(1, ge=1, description="optimisation passes over each generation round")
    epsilon: float = Field(0.2, gt=0, description="clip range of the policy ratio")
    loss_type: Literal[LOSS_TYPES] = Field(
        "dapo", description="grpo, dr_grpo, dapo, bnpo, cispo, sapo, luspo or vespo"
    )
    scale_rewards: Literal["group", "batch", "none"] | bool = Field(
        "group", description="advantage scaling: group, batch or none"
    )
    importance_sampling_level: Literal["token", "sequence"] = Field("token", description="token, or sequence (GSPO)")
    mask_truncated_completions: bool = Field(
        False, description="drop completions that did not end with EOS from the loss"
    )
    log_completions: bool = Field(False, description="log sampled completions to the trackers")
    pad_to_multiple_of: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        "auto", description="pad prompt and completion ids to a multiple of N; auto = 128 on Neuron, none elsewhere"
    )

    @field_validator("pad_to_multiple_of", mode="before")
    @classmethod
    def _pad_from_text(cls, value):
        # GRPOConfig reads the string its CLI passes ("16", "none"); a value copied from a TRL command
        # line means the same here.
        if isinstance(value, str) and value != "auto":
            if value.lower() in ("none", "null"):
                return None
            try:
                return int(value)
            except ValueError:
                raise PydanticCustomError(
                    "pad_value",
                    "expected an integer >= 1, auto or null, got {got}",
                    {"got": shown(value), "suggest": "auto"},
                ) from None
        return value

    @field_validator("scale_rewards")
    @classmethod
    def _bool_scale_rewards(cls, value):
        # TRL maps True/False to group/none; do it here so the resolved config shows the real choice.
        return {True: "group", False: "none"}.get(value, value) if isinstance(value, bool) else value


class GenerationConfig(Section):
    # Differs from TRL (512): long completions on CPU are the main cost of a local run.
    max_completion_length: int = TrlField(256, ge=1, description="max new tokens per completion")
    temperature: float = TrlField(1.0, gt=0, description="sampling temperature")
    top_p: float = TrlField(1.0, gt=0, le=1, description="nucleus sampling")
    top_k: int = TrlField(0, ge=0, description="top-k sampling; 0 = off")
    min_p: float | None = TrlField(None, ge=0, le=1, description="min-p sampling; null = off")
    repetition_penalty: float = TrlField(1.0, gt=0, description="1.0 = off")


class KeepBest(Section):
    metric: str = Field(description="the eval metric ranking the evaluation points, e.g. eval/pass@4")
    mode: Literal["max", "min"] = Field("max", description="max: higher is better; min: lower is better")
    top_k: int = Field(1, ge=1, description="models kept: the best as best/, the others as best-step<N>/")


class StopAt(Section):
    metric: str = Field(description="the eval metric that ends training once it reaches `value`")
    value: float = Field(description="the target (reached: >= for scores, <= for losses and kl)")


class EvalConfig(Section):
    split: str | None = Field(
        None,
        description="held-out split of eval.dataset (default: data.eval_split, its alias, or data.test_size's rows)",
    )
    dataset: UserPath | None = Field(None, description="another dataset to evaluate on; null = data.dataset")
    every_steps: int | None = Field(
        None, ge=0, description="evaluate every N optimizer steps; null = data.eval_every_steps (its alias)"
    )
    before_training: bool = Field(True, description="also evaluate before the first step")
    samples_per_prompt: int = Field(1, ge=1, description="completions per prompt (k of pass@k); 1 = greedy")
    temperature: float = Field(1.0, gt=0, description="sampling temperature when samples_per_prompt > 1")
    max_completion_length: int | None = Field(
        None, ge=1, description="max new tokens; null = generation.max_completion_length"
    )
    max_prompts: int | None = Field(
        None, ge=1, description="held-out prompts to evaluate; null = data.eval_samples (its alias)"
    )
    batch_size: int = Field(64, ge=1, description="prompts generated together")
    rewards: list[RewardSpec] | None = Field(None, description="rewards to score with; null = the training rewards")
    pass_reward: str | None = Field(
        None, description="the reward that decides pass/fail for pass@k and mean@k; null = the first reward"
    )
    pass_threshold: float = Field(1.0, description="a completion passes when the pass reward reaches this value")
    keep_best: KeepBest | None = Field(None, description="keep the best models by an eval metric")
    stop_at: StopAt | None = Field(None, description="stop training once an eval metric reaches a value")
    patience: int | None = Field(
        None, ge=1, description="stop after this many evaluations without a better keep_best.metric"
    )


class SaveCompletions(Section):
    every_steps: int = Field(10, ge=1, description="keep sampled completions every N optimizer steps")
    max_per_step: int = Field(8, ge=1, description="completions kept per saved step (the file stays small)")


class LoggingConfig(Section):
    report_to: list[Literal[REPORT_TO]] = TrlField(
        default_factory=lambda: ["wandb"], description="trackers; wandb falls back to offline mode"
    )
    project: str = Field("grpolab", description="WandB project")
    entity: str | None = Field(None, description="WandB team or user; null = your default")
    group: str | None = Field(None, description="WandB group (sweeps set it)")
    tags: list[str] = Field(default_factory=list, description="WandB tags")
    save_completions: SaveCompletions | None = Field(
        None, description="write sampled completions to completions.jsonl in the run directory; null = off"
    )

    @field_validator("report_to", mode="before", json_schema_input_type=list[Literal[REPORT_TO]] | Literal[REPORT_TO])
    @classmethod
    def _one_tracker_as_list(cls, value):
        return [value] if isinstance(value, str) else value


class ClusterConfig(Section):
    num_processes: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="processes per machine; auto = visible GPUs"
    )
    num_machines: int = Field(1, ge=1, description="nodes")
    machine_rank: int = Field(0, ge=0, description="this node's rank")
    main_process_ip: str | None = Field(None, description="address of rank 0 (multi-node)")
    main_process_port: int = Field(29500, ge=1, le=65535, description="port of rank 0")
    backend: Literal["ddp", "deepspeed", "fsdp"] = Field("ddp", description="ddp, deepspeed or fsdp")
    zero_stage: int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage (backend: deepspeed)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="accelerate mixed precision; auto = bf16 on GPU"
    )
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="cpu is for tests and debugging")
    use_vllm: bool | Literal["auto"] = TrlField("auto", description="auto = vLLM when importable and CUDA is present")
    vllm_mode: Literal["colocate", "server"] = TrlField(
        "colocate", description="colocate (in the training processes) or server"
    )
    vllm_server_host: str = TrlField("0.0.0.0", description="vLLM server address (server mode)")
    vllm_server_port: int = TrlField(8000, ge=1, le=65535, description="vLLM server port (server mode)")
    vllm_gpu_memory_utilization: float = TrlField(
        0.3, gt=0, le=1, description="GPU memory share for vLLM (colocate mode)"
    )
    threads_per_process: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="torch CPU threads per process; auto = this machine's cores / processes on it"
    )


# --------------------------------------------------------------------------- guard
# What the live guard does with each doctor finding that can hold on the metrics of a running run.
GUARD_ACTIONS = ("warn", "stop", "off")
_ACTION = Literal[GUARD_ACTIONS]


class GuardThresholds(Section):
    """The limits the live guard judges by: the same names and defaults as `grpolab doctor
    --thresholds` (grpolab.tune.thresholds; a test keeps them equal), plus the guard's own."""

    min_points: int = Field(4, ge=2, description="logged steps a trend finding needs (reward flat, entropy or KL)")
    zero_std_frac: float = Field(
        0.5, gt=0, le=1, description="mean frac_reward_zero_std above which most groups carry no signal"
    )
    constant_reward_std: float = Field(
        1e-9, ge=0, description="reward_std at or below this counts as zero reward spread"
    )
    clipped_ratio: float = Field(
        0.3, gt=0, le=1, description="mean completions/clipped_ratio above which completions are cut off"
    )
    entropy_collapse_ratio: float = Field(
        0.1, gt=0, lt=1, description="entropy of the last logged step / the first, below which entropy collapsed"
    )
    entropy_floor: float = Field(0.02, ge=0, description="entropy (nats/token) below which sampling is near-greedy")
    kl_max: float = Field(0.5, gt=0, description="kl of the last logged step above which KL is too high")
    kl_growth: float = Field(3.0, gt=1, description="last-quarter mean kl / second-quarter mean kl: still growing")
    kl_extreme: float = Field(2.0, gt=0, description="kl of the last logged step that is too high whatever its trend")
    lr_floor: float = Field(1e-5, gt=0, description="a peak learning_rate below this is too small to move the model")
    reward_flat: float = Field(0.02, ge=0, description="reward gain (last third - first third) within noise")
    reward_gain: float = Field(0.05, ge=0, description="reward rise that counts as real (reward hacking check)")
    eval_drop: float = Field(0.05, ge=0, description="fall of held-out accuracy that counts (reward hacking check)")
    grad_norm_spike: float = Field(
        50.0, gt=1, description="largest grad_norm / median of the first three logged: exploding gradients"
    )
    reward_collapse: float = Field(
        0.5, gt=0, le=1, description="fraction of the best reward lost by the last third: a collapsed run"
    )
    weight_growth: float = Field(
        10.0,
        gt=1,
        description="trainable-weight norm / its norm before step 1 above which the update blew up the weights "
        "(divergence; caught before the loss turns NaN)",
    )


class GuardConfig(Section):
    """`guard:` the doctor's rules, run live on the metrics logged so far; each finding kind warns
    (printed once, recorded), stops the run with a checkpoint, or is off."""

    min_steps: int = Field(
        10, ge=1, description="optimizer steps before any finding may act (the first steps are noisy)"
    )
    window: int = Field(
        10,
        ge=1,
        description="logged steps in a row with zero reward spread before constant_reward / no_learning_signal hold",
    )
    divergence: _ACTION = Field(
        "stop", description="non-finite or exploding loss / grad_norm / kl, blown-up weights, a collapsed reward"
    )
    constant_reward: _ACTION = Field(
        "stop", description="every completion got the same reward for `window` logged steps in a row"
    )
    no_learning_signal: _ACTION = Field(
        "stop", description="every group had zero reward spread for `window` logged steps in a row"
    )
    clipped_completions: _ACTION = Field("warn", description="completions cut off at max_completion_length")
    kl_growth: _ACTION = Field("warn", description="KL to the reference model keeps growing")
    entropy_collapse: _ACTION = Field("warn", description="sampling has become (almost) deterministic")
    reward_hacking: _ACTION = Field("warn", description="reward rises while held-out accuracy falls")
    lr_too_low: _ACTION = Field("warn", description="reward flat with a learning rate too small to move the model")
    forecast_after: int = Field(
        10,
        ge=0,
        description="optimizer steps timed before the run's time is forecast (step 1, the warm-up, is left out); "
        "0 = no forecast",
    )
    thresholds: GuardThresholds = Field(default_factory=GuardThresholds)

    @field_validator("forecast_after")
    @classmethod
    def _not_only_warm_up(cls, value: int) -> int:
        # Step 1 pays the warm-up and is left out: one step alone leaves nothing to time.
        if value == 1:
            raise ValueError("must be 0 (no forecast) or at least 2: step 1 pays the warm-up and is not timed")
        return value

    @property
    def kinds(self) -> dict[str, str]:
        """finding kind -> warn | stop | off."""
        return {kind: getattr(self, kind) for kind in GUARD_KINDS}


# The finding kinds: the guard's fields that take an action, in their order.
GUARD_KINDS = tuple(name for name, field in GuardConfig.model_fields.items() if field.annotation == _ACTION)


class GRPOLabConfig(Section):
    mode: Literal["local", "cluster"] = Field(
        "local", description="local or cluster: picks the preset under this file"
    )
    output_dir: UserPath = TrlField("./grpo_results_local", description="each run gets its own folder inside")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rewards: list[RewardSpec] = Field(default_factory=lambda: [RewardSpec(name="numeric_match")], min_length=1)
    tools: list[ImportPath] = Field(
        default_factory=list, description="functions the model may call (module:function), passed to TRL as tools"
    )
    environment: ImportPath | dict[str, ImportPath] | None = Field(
        None, description="module:Class (or name -> module:Class) giving TRL's environment_factory"
    )
    rollout: ImportPath | None = Field(
        None, description="module:function replacing TRL's generation (rollout_func(prompts, trainer) -> dict)"
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    grpo: GRPOSection = Field(default_factory=GRPOSection)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variables set before training (like TRL recipes' env:)"
    )

    @field_validator("env", mode="before", json_schema_input_type=dict[str, str | int | float | bool])
    @classmethod
    def _env_values_as_strings(cls, env):
        # `CUDA_VISIBLE_DEVICES: 0` is how people write it: a number or boolean is the string the
        # shell would see (a bool is an int: `true`). Lists, mappings and null stay, for the type error.
        if not isinstance(env, dict):
            return env
        finite = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
        return {name: str(value).lower() if finite(value) else value for name, value in env.items()}

    @model_validator(mode="after")
    def _eval_from_its_aliases(self):
        # A held-out file is its own split: data.eval_split names a split of data.dataset.
        held_out_file = (self.eval.dataset or "").lower().endswith(DATA_FILE_SUFFIXES)
        for key, alias in EVAL_ALIASES.items():
            name = key.partition(".")[2]
            if getattr(self.eval, name) is None and not (name == "split" and held_out_file):
                setattr(self.eval, name, getattr(self.data, alias.partition(".")[2]))
        return self

    @field_validator("rewards")
    @classmethod
    def _weights_sum_positive(cls, rewards):
        # TRL sums weight x reward: a non-positive total turns the objective upside down or off.
        total = sum(r.weight for r in rewards)
        if total <= 0:
            raise ValueError(
                f"the reward weights sum to {total:g}; they must sum to a positive number. "
                "Fix: give the main reward a positive `weight`"
            )
        return rewards


# The section class behind each top-level key, for key checks and suggestions.
SECTIONS: dict[str, type[Section]] = {
    name: field.annotation
    for name, field in GRPOLabConfig.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
}


# --------------------------------------------------------------------------- the closed schema
KIND_CHECK = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "dict": lambda v: isinstance(v, dict),
    "list": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
    "any": lambda v: True,
    "python": lambda v: False,  # an object built in Python (ParallelismConfig): a YAML value never is one
}


def _one_of(choices, default=None, words=False):
    """A value TRL takes only from `choices` (or its default): each item of a list, and each word of
    a string where TRL splits one (`debug: "underflow_overflow tpu_metrics_debug"`)."""

    def check(value):
        if value == default:
            return value
        items = value if isinstance(value, list) else value.split() if words and isinstance(value, str) else [value]
        for item in items:
            if isinstance(item, str) and item not in choices:
                close = difflib.get_close_matches(item, choices, n=1)
                raise PydanticCustomError(
                    "literal_error",
                    "Input should be {expected}",
                    {"expected": ", ".join(f"'{c}'" for c in choices), "suggest": close[0] if close else default},
                )
        return value

    return check


def _trl_kind(spec: dict):
    kinds = spec["kinds"]
    choices = spec.get("choices")
    one_of = _one_of(choices, spec["default"], "list" in kinds) if choices else (lambda value: value)
    wanted = " or ".join("a Python object, which no YAML value is" if k == "python" else k for k in kinds)

    def check(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}.")
        if not any(KIND_CHECK[k](value) for k in kinds):
            default = spec["default"] if any(KIND_CHECK[k](spec["default"]) for k in kinds) else None
            raise PydanticCustomError(
                "trl_kind",
                "expected {wanted} (TRL field), got {got}",
                {"wanted": wanted, "got": shown(value), "suggest": default},
            )
        if spec.get("json") and isinstance(value, str) and value.startswith("{"):
            _check_json_object(value)
        return one_of(value)

    return check


def _check_json_object(text: str) -> None:
    """A mapping written as TRL's CLI passes it (`lr_scheduler_kwargs: '{"min_lr": 1e-6}'`), which TRL's
    constructor parses: a typo in it is a validation problem here, not an error when training starts."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad JSON, a number past Python's digit limit, deep nesting
        where = f" (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise PydanticCustomError(
            "trl_json",
            "a string starting with `{` is read as JSON, and this is not JSON: {error}",
            {"error": f"{getattr(exc, 'msg', None) or str(exc).split(';')[0]}{where}", "suggest": None},
        ) from None
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "trl_json", "expected a JSON object, got {got}", {"got": shown(value), "suggest": None}
        )


@lru_cache(maxsize=1)
def closed_model() -> type[GRPOLabConfig]:
    """GRPOLabConfig with every real TRL field declared under `training:` and `grpo:`, nothing else allowed.
    Fields grpolab sets from another key (owned.OWNED) or TRL removed (owned.REMOVED) stay undeclared, so
    they are reported as unknown keys, with the key to use instead (pydantic_errors words that)."""
    from .owned import OWNED, REMOVED

    def close(section: str):
        cls = SECTIONS[section]

        class Closed(cls):
            model_config = ConfigDict(**{**cls.model_config, "extra": "forbid", "validate_default": False})

        declared: dict = {}
        for name, spec in trl_fields()[section].items():
            if name in cls.model_fields:
                if spec.get("choices"):  # a typed field whose TRL values are an enum (lr_scheduler_type)
                    info = cls.model_fields[name]
                    check = _one_of(spec["choices"], spec["default"])
                    declared[name] = (Annotated[info.annotation, AfterValidator(check)], info)
            elif name not in OWNED and name not in REMOVED:
                declared[name] = (Annotated[Any, AfterValidator(_trl_kind(spec))], None)
        model = create_model(cls.__name__, __base__=Closed, __module__=__name__, **declared)
        return model, Field(default_factory=model)

    return create_model(
        "GRPOLabConfig", __base__=GRPOLabConfig, __module__=__name__, training=close("training"), grpo=close("grpo")
    )


def members(annotation) -> list:
    """The alternatives of an annotation (None, the nullable part, is not one; Annotated unwrapped)."""
    if annotation is None or annotation is typing.Any:
        return []
    if typing.get_origin(annotation) is typing.Annotated:
        return members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) if arg is not type(None) for m in members(arg)]
    return [annotation]


@lru_cache(maxsize=1)
def path_keys() -> frozenset[str]:
    """Every key whose value is a path on this machine (UserPath, ImportPath), in the canonical
    form `rewards[].name`: what `config explain --key` says relative paths are relative to."""

    def walk(model: type[BaseModel], prefix: str) -> set[str]:
        keys: set[str] = set()
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            if "expand_home" in str(field.annotation) + str(field.metadata):
                keys.add(key)
            for arg in members(field.annotation):  # a section, X | None, or list[X] | None
                item = typing.get_args(arg)[0] if typing.get_origin(arg) is list else arg
                if isinstance(item, type) and issubclass(item, BaseModel):
                    keys |= walk(item, f"{key}{'.' if item is arg else '[].'}")
        return keys

    return frozenset(walk(GRPOLabConfig, ""))


@lru_cache(maxsize=1)
def trl_names() -> dict[str, str]:
    """grpolab key (`generation.top_p`, `rewards[].weight`) -> the GRPOConfig field it becomes, for
    every typed key that reaches TRL."""

    def walk(model: type[BaseModel], prefix: str, own_names: bool) -> dict[str, str]:
        names: dict[str, str] = {}
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            trl = (field.json_schema_extra or {}).get("trl") or own_names
            if trl:
                names[key] = name if trl is True else trl
                continue
            annotation = field.annotation
            item = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
            if isinstance(item, type) and issubclass(item, BaseModel):  # a section, or list[X] (not X | None)
                dot = "." if item is annotation else "[]."
                names |= walk(item, f"{key}{dot}", issubclass(item, PassThroughSection))
        return names

    return walk(GRPOLabConfig, "", False)
