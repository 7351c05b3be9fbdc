"""Memory plan before launch: per-device bytes of a GRPO run, by component, from the config and the
model's shape (its config.json, read as JSON: no torch, transformers or trl).

Components (per device, in the order they are allocated):
  weights, gradients  parameters (trainable ones for gradients) x bytes of the dtype they load in
  optimizer    AdamW's exp_avg and exp_avg_sq in the parameter dtype, plus a float32 0-dim `step` tensor
               per parameter tensor; under DeepSpeed, float32 master weights and moments (12 bytes per
               parameter) when the weights are 16-bit
  reference    a copy of the weights only when beta > 0 (none at 0; a LoRA run disables the adapter)
  activations, logits  the training phase (see activation_values_per_token and logits_bytes)
  generation   the KV cache of one round with transformers, or the vLLM colocate share: not alive with
               the activations, so the larger of the two phases counts
Sharding by backend: ddp none; ZeRO-1 optimizer; ZeRO-2 optimizer + gradients; ZeRO-3 and FSDP
weights, gradients and optimizer (and the reference model, which TRL prepares the same way)."""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.derive import derive, reference_model_rule
from grpolab.config.errors import did_you_mean
from grpolab.demo.tiny_model import CHARS, RECIPE, _source_digest, default_cache_dir
from grpolab.runtime.hub import config_path

GIB = 2**30
# Memory each GPU reports (GiB), as `nvidia-smi` shows it for the common models.
GPUS = {
    "h200": 139.8, "h100": 79.6, "h100-94gb": 93.1, "a100": 79.2, "a100-80gb": 79.2, "a100-40gb": 39.4,
    "b200": 178.4, "l40s": 44.4, "l40": 44.4, "a6000": 47.5, "a10g": 22.0, "a10": 22.0, "l4": 22.0,
    "rtx4090": 23.6, "rtx3090": 23.6, "v100": 31.7, "v100-16gb": 15.8, "t4": 14.6,
}  # fmt: skip
# CUDA context, NCCL buffers and allocator fragmentation: memory a process loses on any GPU.
CUDA_RESERVE = 1.0 * GIB
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# TRL's fused LM head (trl/kernels/chunked_logprob.py): tiles of at most this many tokens x vocabulary entries.
HEAD_TOKEN_TILE, HEAD_VOCAB_TILE = 4096, 32768
# Assumed prompt tokens when the config cannot tell (a Hub or file dataset); --prompt-tokens overrides it.
DEFAULT_PROMPT_TOKENS = 256


def gpu_memory(name: str) -> float:
    """GiB of a GPU by name (h100, a100-40gb, ...)."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower()).replace("nvidia-", "")
    key = key.replace("-sxm", "").replace("-pcie", "")
    if key in GPUS:
        return GPUS[key]
    message = f"unknown GPU `{name}`; known: {', '.join(GPUS)}.{did_you_mean(key, GPUS)}"
    raise ConfigError.of("", message, "give its memory instead: --gpu-mem GB", "--gpu")


# --------------------------------------------------------------------------- the model's shape
@dataclass(frozen=True)
class ModelShape:
    family: str  # gpt2 or llama: parameter counts are exact (tested) for GPT-2, Llama, Mistral-style GQA, Qwen2 and
    # Qwen3; other decoder-only families are counted in the Llama layout, which can miss their extra norms
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    positions: int
    tied_embeddings: bool
    qkv_bias: bool = False
    qk_norm: bool = False
    source: str = ""
    counted: int | None = None  # a parameter count given directly (no config.json)
    explicit_head_dim: int | None = None  # config.json's head_dim, where it is not hidden / heads (Qwen3)

    @property
    def head_dim(self) -> int:
        return self.explicit_head_dim or self.hidden // self.heads

    def tensor_sizes(self) -> list[int]:
        """Elements of every parameter tensor, as the model's modules create them."""
        h, inner, v = self.hidden, self.intermediate, self.vocab
        if self.family == "gpt2":
            # per block, weight and bias each: ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj
            block = [h, h, h * 3 * h, 3 * h, h * h, h, h, h, h * inner, inner, inner * h, h]
            sizes = [v * h, self.positions * h, *block * self.layers, h, h]  # wte, wpe, blocks, ln_f (w, b)
        else:
            q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
            # per block: q, k, v (and their biases), o, q_norm and k_norm (Qwen3), gate, up, down, the two norms
            bias = [q, kv, kv] if self.qkv_bias else []
            qk_norm = [self.head_dim] * 2 if self.qk_norm else []
            block = [h * q, h * kv, h * kv, *bias, q * h, *qk_norm, h * inner, h * inner, inner * h, h, h]
            sizes = [v * h, *block * self.layers, h]  # embed_tokens, blocks, norm
        return sizes if self.tied_embeddings else [*sizes, v * h]  # lm_head

    @property
    def parameters(self) -> int:
        return self.counted if self.counted is not None else sum(self.tensor_sizes())

    @property
    def tensor_count(self) -> int:
        if self.counted is not None:  # a count only: about 9 tensors per layer in the Llama layout
            return 9 * self.layers + 3
        return len(self.tensor_sizes())

    def _lora_layers(self, targets) -> list[tuple[int, int]]:
        """(in, out) of the linear layers of one block that LoRA adapts (`all-linear`: all but the LM head)."""
        h, inner = self.hidden, self.intermediate
        if self.family == "gpt2":
            names = ["c_attn", "c_proj", "c_fc", "c_proj"]
            shapes = [(h, 3 * h), (h, h), (h, inner), (inner, h)]
        else:
            q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
            names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
            shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, inner), (h, inner), (inner, h)]
        chosen = names if targets == "all-linear" else [t.rsplit(".", 1)[-1] for t in targets]
        return [shape for name, shape in zip(names, shapes) if name in chosen]

    def lora_parameters(self, r: int, targets) -> int:
        return self.layers * sum(r * (i + o) for i, o in self._lora_layers(targets))

    def lora_tensors(self, targets) -> int:
        return 2 * len(self._lora_layers(targets)) * self.layers

    # ---- constructors
    @classmethod
    def from_config_dict(cls, data: dict, source: str = "") -> ModelShape:
        data = data.get("text_config", data) if "text_config" in data and "hidden_size" not in data else data
        kind = data.get("model_type", "")

        def need(*names):
            for name in names:
                if isinstance(data.get(name), int):
                    return data[name]
            message = f"config.json has none of {', '.join(names)}; cannot read the model's shape."
            fix = "pass the parameter count instead: --model 1.5B"
            raise ConfigError.of("", message, fix, source or "config.json")

        if kind == "gpt2" or "n_embd" in data:
            h = need("n_embd", "hidden_size")
            vocab, layers = need("vocab_size"), need("n_layer", "num_hidden_layers")
            heads, positions = need("n_head", "num_attention_heads"), need("n_positions", "max_position_embeddings")
            inner, tied = data.get("n_inner") or 4 * h, data.get("tie_word_embeddings", True)
            return cls("gpt2", vocab, h, layers, heads, heads, inner, positions, tied, source=source)
        heads, vocab = need("num_attention_heads"), need("vocab_size")
        h, layers = need("hidden_size"), need("num_hidden_layers")
        inner, positions = need("intermediate_size"), need("max_position_embeddings")
        kv, tied = data.get("num_key_value_heads") or heads, data.get("tie_word_embeddings", False)
        bias = bool(data.get("attention_bias", kind in ("qwen2", "qwen2_moe")))
        head_dim = data.get("head_dim") if isinstance(data.get("head_dim"), int) else None
        return cls(
            "llama", vocab, h, layers, heads, kv, inner, positions, tied, bias, kind == "qwen3", source, None, head_dim
        )

    @classmethod
    def from_config_dir(cls, folder: Path) -> ModelShape:
        path = Path(folder) / "config.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError.of("", "no config.json there.", "point --model at a model folder", str(folder)) from None
        except (OSError, ValueError) as exc:
            raise ConfigError.of("", f"config.json does not parse: {exc}.", None, str(path)) from None
        return cls.from_config_dict(data, str(path))

    @classmethod
    def from_parameter_count(cls, count: int) -> ModelShape:
        """A Llama-like shape of about `count` parameters (hidden = 128 x layers, MLP 8/3 x hidden,
        vocabulary 32000): weights, gradients and optimizer use `count` exactly; activations use this shape."""
        layers = max(1, round((count * 3 / (32 * 128**2)) ** (1 / 3)))
        hidden, heads = 128 * layers, layers  # head_dim 128
        inner = 64 * math.ceil(hidden * 8 / 3 / 64)
        source = f"{count / 1e9:.3g}B parameters (Llama-like shape assumed for activations)"
        return cls("llama", 32000, hidden, layers, heads, heads, inner, 4096, False, source=source, counted=count)


_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kKmMbB]?)\s*$")


def parse_count(text: str) -> int | None:
    if not (match := _COUNT.match(text)):
        return None
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def demo_model_shape() -> ModelShape:
    """The embedded demo model: its cached config.json, else the recipe it is built from."""
    folder = default_cache_dir() / f"demo-addition-{_source_digest()}"
    if (folder / "config.json").is_file():
        return ModelShape.from_config_dir(folder)
    h, vocab = RECIPE["n_embd"], 3 + len(CHARS)
    return ModelShape(
        "gpt2", vocab, h, RECIPE["n_layer"], RECIPE["n_head"], RECIPE["n_head"], 4 * h, RECIPE["n_positions"], True,
        source="the demo model's recipe (not built yet)",
    )  # fmt: skip


def resolve_shape(model: str | None) -> ModelShape:
    """--model PATH_OR_PARAMS, else the config's model: a folder, a cached Hub id, or a count (1.5B)."""
    if model is None:
        return demo_model_shape()
    if (count := parse_count(model)) is not None:
        return ModelShape.from_parameter_count(count)
    if (found := config_path(model)) is not None:  # its folder, the file itself, or the Hub cache
        return ModelShape.from_config_dir(found.parent)
    message = f"`{model}` is not a local folder and not in the Hugging Face cache (nothing is downloaded)."
    fix = "pass a folder with config.json, or the parameter count: --model 1.5B"
    raise ConfigError.of("model.name_or_path", message, fix, "--model")


# --------------------------------------------------------------------------- the estimate
@dataclass
class Setup:
    """What the plan depends on, resolved from the config (and the flags of `config explain --memory`)."""

    world: int
    per_device: int  # per_device_train_batch_size
    steps_per_generation: int
    prompt_tokens: int
    completion_tokens: int
    dtype: str  # the parameter dtype
    activation_bytes: int  # bytes per activation value (2 under bf16 autocast)
    backend: str  # ddp, zero1, zero2, zero3, fsdp
    checkpointing: bool
    lora: bool
    lora_r: int
    lora_targets: object
    beta: float
    vllm: bool
    vllm_util: float
    device: str  # cuda or cpu
    notes: list[str] = field(default_factory=list)

    @property
    def reference(self) -> tuple[bool, str]:
        """(a separate reference model is loaded, why): config.derive's rule, TRL's."""
        return reference_model_rule(self.beta, peft=self.lora)


def setup_from_config(cfg, world: int, prompt_tokens: int | None, device: str = "cuda") -> Setup:
    notes = []
    if prompt_tokens is None and cfg.data.dataset == "builtin:addition":
        prompt_tokens = 6  # "12+34=" in the demo's character tokenizer
    elif prompt_tokens is None:
        prompt_tokens = DEFAULT_PROMPT_TOKENS
        notes.append(f"prompt length assumed {DEFAULT_PROMPT_TOKENS} tokens (--prompt-tokens N to set it)")
    cluster = cfg.cluster
    # Precision, weights and generation engine as training decides them (runtime.resolve), on the
    # planned machine: GPUs with native bf16 and vLLM installed, or this CPU.
    from grpolab.runtime.hardware import HardwareFacts, probe
    from grpolab.runtime.resolve import resolve

    if device == "cuda":
        facts = HardwareFacts.planned(max(1, world), installed={"vllm", "deepspeed"})
    else:
        facts = replace(probe(use_torch=False), gpus=())
    resolved = resolve(cfg, facts, world_size=world)
    autocast, dtype, use_vllm = resolved.bf16, resolved.model_dtype, resolved.use_vllm
    act = 2 if (autocast or DTYPE_BYTES[dtype] == 2) else 4
    backend = (
        cluster.backend if cluster.backend != "deepspeed" else f"zero{cluster.zero_stage}".replace("zero0", "ddp")
    )
    if cluster.use_vllm == "auto" and device == "cuda":
        notes.append("cluster.use_vllm is auto: planned with vLLM, as on a GPU with vLLM installed")
    return Setup(
        world=world,
        per_device=cfg.training.per_device_train_batch_size,
        steps_per_generation=derive(cfg, world).steps_per_generation,
        prompt_tokens=prompt_tokens,
        completion_tokens=cfg.generation.max_completion_length,
        dtype=dtype,
        activation_bytes=act,
        backend=backend,
        checkpointing=cfg.training.gradient_checkpointing,
        lora=cfg.model.lora.enabled,
        lora_r=cfg.model.lora.r,
        lora_targets=cfg.model.lora.target_modules,
        beta=cfg.grpo.beta,
        vllm=use_vllm and cluster.vllm_mode == "colocate",
        vllm_util=cluster.vllm_gpu_memory_utilization,
        device=device,
        notes=notes,
    )


def static_bytes(shape: ModelShape, s: Setup) -> dict:
    """weights, gradients, optimizer and reference model, per device (exact for ddp on one device)."""
    b, params = DTYPE_BYTES[s.dtype], shape.parameters
    if s.lora:
        grad_b = 4 if b == 2 else b  # peft keeps adapters in float32 over a 16-bit base model
        trainable, tensors = shape.lora_parameters(s.lora_r, s.lora_targets), shape.lora_tensors(s.lora_targets)
    else:
        grad_b, trainable, tensors = b, params, shape.tensor_count
    if s.backend != "ddp" and grad_b == 2:
        optim = trainable * 12  # DeepSpeed / FSDP: float32 master weights and moments
    else:
        optim = trainable * 2 * grad_b + 4 * tensors  # exp_avg, exp_avg_sq, and a float32 `step` per tensor

    def per_device(value: float, *sharded_by: str) -> float:
        return value / s.world if s.backend in sharded_by else value

    return {
        "weights": per_device(params * b + (trainable * grad_b if s.lora else 0), "zero3", "fsdp"),
        "gradients": per_device(trainable * grad_b, "zero2", "zero3", "fsdp"),
        "optimizer": per_device(optim, "zero1", "zero2", "zero3", "fsdp"),
        "reference": per_device(params * b if s.reference[0] else 0, "zero3", "fsdp"),
        "trainable_parameters": trainable,
    }


def activation_values_per_token(shape: ModelShape, checkpointing: bool) -> float:
    """Values the backward pass keeps per token, over all layers.
    Per block, what autograd saves (sdpa attention, which keeps q, k, v, its output and a log-sum-exp,
    never the seq x seq scores):
      GPT-2: layer-norm inputs and outputs (4h), qkv (3h), attention output and its contiguous copy (2h),
             the MLP input of the GELU (I) and the four tensors of GPT-2's tanh GELU (4I)
      Llama: the RMSNorm input, normalised and scaled values twice (6h), q after rotary (h), k and v
             after rotary (2 kv), attention output and its contiguous copy (2h), gate, SiLU, up and their
             product (4I)
    With gradient checkpointing only each block's input (h) is kept, plus one block recomputed at a time.
    The final norm keeps its input and output, and the LM head a copy of the shifted hidden state (3h)."""
    h, inner = shape.hidden, shape.intermediate
    kv = shape.kv_heads * shape.head_dim
    block = 9 * h + 5 * inner if shape.family == "gpt2" else 10 * h + 2 * kv + 4 * inner
    layers = (shape.layers * h + block) if checkpointing else shape.layers * block
    return layers + 3 * h


def activation_bytes(shape: ModelShape, s: Setup) -> float:
    tokens = s.per_device * (s.prompt_tokens + s.completion_tokens)
    return tokens * activation_values_per_token(shape, s.checkpointing) * s.activation_bytes


def logits_bytes(shape: ModelShape, s: Setup) -> float:
    """TRL's fused LM head scores the tokens in tiles instead of materialising [tokens, vocab] logits:
      - its tile buffer: min(tokens, 4096) x 32768 entries in the compute dtype (always 32768 wide, even
        for a smaller vocabulary);
      - the float32 gradients of the last hidden state and (when the head trains) of the LM head weight;
      - without Triton (CPU), the tile math runs as torch ops on [tokens, vocab] float32 arrays: in the
        backward pass the scaled logits, log-probs, probabilities, the gradient, the target mask and
        two intermediates are alive at once (7 arrays). With Triton (GPU) that math is fused.
    On a GPU only the completion tokens are scored; elsewhere every position."""
    cuda = s.device == "cuda"
    scored = s.per_device * (s.completion_tokens if cuda else s.prompt_tokens + s.completion_tokens - 1)
    tile = min(scored, HEAD_TOKEN_TILE) * (HEAD_VOCAB_TILE * s.activation_bytes)
    unfused = 0 if cuda else 7 * min(scored, HEAD_TOKEN_TILE) * min(shape.vocab, HEAD_VOCAB_TILE) * 4
    return tile + unfused + (scored + (0 if s.lora else shape.vocab)) * shape.hidden * 4  # float32 grads


def kv_bytes_per_token(shape: ModelShape, b: int) -> int:
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * b


@dataclass
class Plan:
    shape: ModelShape
    setup: Setup
    components: dict  # name -> bytes
    total: float
    gpu_bytes: float | None
    fits: bool | None
    vllm_kv_tokens: int | None = None
    suggestions: list[tuple[list[str], float]] = field(default_factory=list)  # ([--set ...], total after)

    def to_dict(self) -> dict:
        return {
            "model": self.shape.source,
            "parameters": self.shape.parameters,
            "trainable_parameters": self.components.get("trainable_parameters"),
            "components_gib": {
                k: round(v / GIB, 4) for k, v in self.components.items() if k != "trainable_parameters"
            },
            "total_gib": round(self.total / GIB, 4),
            "gpu_gib": round(self.gpu_bytes / GIB, 2) if self.gpu_bytes else None,
            "fits": self.fits,
            "vllm_kv_cache_tokens": self.vllm_kv_tokens,
            "suggestions": [{"set": s, "total_gib": round(t / GIB, 3)} for s, t in self.suggestions],
            "notes": self.setup.notes,
        }


def estimate(shape: ModelShape, s: Setup, gpu_bytes: float | None) -> Plan:
    comp = static_bytes(shape, s)
    comp["activations"], comp["logits"] = activation_bytes(shape, s), logits_bytes(shape, s)
    kv_tokens, gen_phase = None, 0.0
    if s.vllm and gpu_bytes:
        share = comp["vllm"] = s.vllm_util * gpu_bytes
        free_kv = share - shape.parameters * 2  # vLLM holds its own 16-bit copy of the weights
        kv_tokens = int(max(0, free_kv) // kv_bytes_per_token(shape, 2))
        if free_kv <= 0:
            s.notes.append(
                f"the vLLM share ({s.vllm_util:g} of the GPU) does not hold vLLM's 16-bit copy of the weights "
                f"({shape.parameters * 2 / GIB:.1f} GiB): raise cluster.vllm_gpu_memory_utilization, or use "
                "cluster.vllm_mode: server on other GPUs"
            )
    else:
        # transformers: the KV cache of the device's whole round (per_device x steps_per_generation
        # completions at full length) plus one step's logits for them
        per_sequence = (s.prompt_tokens + s.completion_tokens) * kv_bytes_per_token(shape, s.activation_bytes)
        gen_phase = comp["generation"] = s.per_device * s.steps_per_generation * (per_sequence + shape.vocab * 4)
    if s.device == "cuda":
        comp["cuda_reserve"] = CUDA_RESERVE
    phases = ("activations", "logits", "generation", "trainable_parameters")
    static = sum(v for k, v in comp.items() if k not in phases)
    total = static + max(comp["activations"] + comp["logits"], gen_phase)
    fits = None if gpu_bytes is None else total <= gpu_bytes
    return Plan(shape, s, comp, total, gpu_bytes, fits, kv_tokens)


def suggest(shape: ModelShape, s: Setup, gpu_bytes: float, cfg) -> list[tuple[list[str], float]]:
    """The smallest changes that make the plan fit, one knob at a time in the order that changes the
    experiment least; when no single change fits, the cheapest combination. Each is a list of --set,
    applied to the config and validated for the world size before it is planned (so a backend change
    also brings the weight dtype that backend resolves to)."""
    options: list[list[str]] = []
    t = cfg.training
    if not t.gradient_checkpointing:
        options.append(["training.gradient_checkpointing=true"])
    p, ga, steps = t.per_device_train_batch_size, t.gradient_accumulation_steps, cfg.grpo.steps_per_generation
    while p > 1 and p % 2 == 0:
        # the effective batch and the round stay the same: a pinned generation_batch_size still divides
        p, ga = p // 2, ga * 2
        sets = [f"training.per_device_train_batch_size={p}", f"training.gradient_accumulation_steps={ga}"]
        if steps is not None:
            steps *= 2
            sets.append(f"grpo.steps_per_generation={steps}")
        options.append(sets)
    if s.world > 1 and s.backend not in ("zero3", "fsdp"):
        stages = (3,) if s.backend == "zero2" else (2, 3)
        options += [["cluster.backend=deepspeed", f"cluster.zero_stage={n}"] for n in stages]
        options.append(["cluster.backend=fsdp"])
    if not s.lora:
        options.append(["model.lora.enabled=true"])
    if s.dtype == "float32":
        # 16-bit weights: fine for a frozen LoRA base; for full training the optimizer then updates
        # bf16 weights directly (the runtime warns about it)
        options.append(["model.dtype=bfloat16"])
    if s.vllm and s.vllm_util > 0.15:
        options.append([f"cluster.vllm_gpu_memory_utilization={round(max(0.1, s.vllm_util - 0.1), 2)}"])
    mcl = cfg.generation.max_completion_length
    while mcl > 16:
        mcl //= 2
        options.append([f"generation.max_completion_length={mcl}"])

    def total_with(sets: list[str]) -> float | None:
        try:
            trial = GRPOConfigLoader.from_dict(cfg.model_dump(mode="json"), world_size=s.world, overrides=sets).config
        except ConfigError:
            return None
        return estimate(shape, setup_from_config(trial, s.world, s.prompt_tokens, s.device), gpu_bytes).total

    chosen, seen = [], set()
    for sets in options:  # one per knob: the first (smallest) batch split or length cut that fits
        knob = sets[0].split("=")[0]
        if knob not in seen and (total := total_with(sets)) is not None and total <= gpu_bytes:
            seen.add(knob)
            chosen.append((sets, total))
    if chosen:
        return chosen
    combo: list[str] = []
    for sets in options:  # greedy: keep adding knobs until it fits
        keys = {x.split("=")[0] for x in sets}
        trial = [x for x in combo if x.split("=")[0] not in keys] + sets
        if (total := total_with(trial)) is None:
            continue
        combo = trial
        if total <= gpu_bytes:
            return [(combo, total)]
    return []


def plan_device(cfg, gpu_gib: float | None) -> str:
    """Where the plan is for: a GPU when one is named or configured; with `cluster.device: auto`, a GPU in
    cluster mode or when this machine has the NVIDIA driver, else the CPU."""
    if cfg.cluster.device == "cpu":
        return "cpu"
    named = gpu_gib is not None or cfg.cluster.device == "cuda" or cfg.mode == "cluster"
    return "cuda" if named or shutil.which("nvidia-smi") else "cpu"


def plan(cfg, shape: ModelShape, world: int, gpu_gib: float | None, prompt_tokens: int | None = None) -> Plan:
    s = setup_from_config(cfg, world, prompt_tokens, plan_device(cfg, gpu_gib))
    gpu_bytes = gpu_gib * GIB if gpu_gib is not None else None
    result = estimate(shape, s, gpu_bytes)
    if result.fits is False:
        result.suggestions = suggest(shape, s, gpu_bytes, cfg)
    return result


# --------------------------------------------------------------------------- report
LABELS = {
    "weights": "policy weights", "gradients": "gradients", "optimizer": "optimizer states (AdamW)",
    "reference": "reference model", "activations": "activations", "logits": "logits buffer (fused LM head)",
    "generation": "generation KV cache (transformers)", "vllm": "vLLM colocate share",
    "cuda_reserve": "CUDA context and allocator reserve",
}  # fmt: skip


def render(p: Plan) -> str:
    s, shape = p.setup, p.shape
    tokens = s.prompt_tokens + s.completion_tokens
    names = {"ddp": "DDP (no sharding)", "fsdp": "FSDP (full shard)"}
    backend = names.get(s.backend, f"DeepSpeed ZeRO-{s.backend[-1]}")
    trainable = p.components["trainable_parameters"]
    lines = [
        f"memory plan per {'GPU' if s.device == 'cuda' else 'process'}: {shape.source}",
        f"  model      {_count(shape.parameters)} parameters ({shape.family} layout, {shape.layers} layers, hidden "
        f"{shape.hidden}, vocabulary {shape.vocab}); {s.dtype} weights; "
        + (f"LoRA r={s.lora_r}: {trainable / 1e6:.3f}M trainable" if s.lora else "all weights trained"),
        f"  run        {s.world} process(es), {backend}; {s.per_device} sequences x {tokens} tokens "
        f"({s.prompt_tokens} prompt + {s.completion_tokens} completion) per micro-step; gradient checkpointing "
        f"{'on' if s.checkpointing else 'off'}; beta {s.beta:g}",
    ]
    width = max(len(v) for v in LABELS.values())
    for key, label in LABELS.items():
        if (value := p.components.get(key)) is None:
            continue
        note = ""
        if key == "reference" and value == 0:
            note = s.reference[1]
        elif key == "activations":
            other = _gib(activation_bytes(shape, replace(s, checkpointing=not s.checkpointing)))
            note = f"{'with' if s.checkpointing else 'without'} gradient checkpointing ({other} GiB the other way)"
        elif key == "generation":
            note = "generation phase; the larger of it and activations + logits counts"
        elif key == "vllm" and p.vllm_kv_tokens is not None:
            note = f"{s.vllm_util:g} of the GPU; KV cache for ~{p.vllm_kv_tokens:,} tokens"
        lines.append(f"  {label:<{width}}  {_gib(value):>10} GiB  {note}".rstrip())
    lines.append(f"  {'total':<{width}}  {_gib(p.total):>10} GiB")
    if p.gpu_bytes is not None:
        verdict = "fits" if p.fits else "does NOT fit"
        lines.append(f"  {'GPU':<{width}}  {_gib(p.gpu_bytes):>10} GiB  {verdict} ({p.total / p.gpu_bytes:.0%} used)")
        if p.fits is False and p.suggestions:
            lines.append("  smallest changes that fit:")
            for sets, total in p.suggestions:
                lines.append(f"    {' '.join('--set ' + x for x in sets)}   -> {_gib(total)} GiB")
        elif p.fits is False:
            lines.append("  no change considered here makes it fit: use more GPUs with ZeRO-3/FSDP or a smaller model")
    return "\n".join(lines + [f"  note: {note}" for note in s.notes])


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _gib(value: float) -> str:
    return f"{value / GIB:.3f}" if value < 10 * GIB else f"{value / GIB:.1f}"
