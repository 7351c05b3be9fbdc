"""Memory plan: the weights, gradients and optimizer-state components equal the bytes torch really
allocates (counted tensor by tensor on CPU), for the demo model's shape and ~14M-parameter GPT-2 and
Llama models; the plan's CLI reads only config.json and never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PYTHON, REPO_ROOT, child_env

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.tune import memory
from grpolab.tune.memory import GIB, ModelShape, Setup, static_bytes


def _setup(**kw) -> Setup:
    base = dict(
        world=1,
        per_device=8,
        steps_per_generation=1,
        prompt_tokens=6,
        completion_tokens=4,
        dtype="float32",
        activation_bytes=4,
        backend="ddp",
        checkpointing=False,
        lora=False,
        lora_r=16,
        lora_targets="all-linear",
        beta=0.0,
        vllm=False,
        vllm_util=0.3,
        device="cpu",
    )
    base.update(kw)
    return Setup(**base)


def _gpt2(n_layer, n_embd, n_head, vocab, positions):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=positions)
    return GPT2LMHeadModel(config), config


def _llama(vocab=18000, hidden=256, inner=688, layers=6, heads=4, kv=2):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inner,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config), config


def _measured(model, lr=1e-3):
    """(weight, gradient, AdamW state) bytes after one real optimizer step on CPU."""
    import torch

    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    optimizer.step()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    state = sum(
        t.numel() * t.element_size()
        for s in optimizer.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor)
    )
    return weights, grads, state


def _auto(model_type, **spec):
    """A tiny model of another decoder family through AutoConfig (Qwen2: q/k/v biases; Qwen3: q/k norms)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **spec)
    return AutoModelForCausalLM.from_config(config), config


_SMALL = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)

CASES = {
    # the embedded demo model's recipe (3 layers, 128 wide, 16-token vocabulary, 32 positions)
    "demo": lambda: _gpt2(3, 128, 4, 16, 32),
    "gpt2_14M": lambda: _gpt2(6, 448, 7, 16, 128),
    "llama_14M": lambda: _llama(),
    "qwen2_tiny": lambda: _auto("qwen2", **_SMALL),
    "qwen3_tiny": lambda: _auto("qwen3", head_dim=32, **_SMALL),  # head_dim != hidden / heads, as in Qwen3
}


@pytest.mark.parametrize("case", list(CASES))
def test_weights_gradients_optimizer_equal_measured_bytes(case):
    model, config = CASES[case]()
    shape = ModelShape.from_config_dict(config.to_dict())
    weights, grads, state = _measured(model)
    planned = static_bytes(shape, _setup())
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    assert shape.tensor_count == len(list(model.parameters()))
    assert planned["weights"] == weights
    assert planned["gradients"] == grads
    assert planned["optimizer"] == state
    if case.endswith("14M"):
        assert 12e6 < shape.parameters < 16e6


def test_bf16_weights_and_state_are_half_the_bytes():
    import torch

    model, config = _gpt2(2, 64, 4, 16, 32)
    model = model.to(torch.bfloat16)
    weights, grads, state = _measured(model)
    planned = static_bytes(ModelShape.from_config_dict(config.to_dict()), _setup(dtype="bfloat16"))
    assert (planned["weights"], planned["gradients"], planned["optimizer"]) == (weights, grads, state)


def test_lora_counts_only_the_adapter_as_trainable():
    from peft import LoraConfig, get_peft_model

    model, config = _llama(vocab=512, hidden=64, inner=128, layers=2, heads=2, kv=1)
    base_params = sum(p.numel() for p in model.parameters())
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    shape = ModelShape.from_config_dict(config.to_dict())
    planned = static_bytes(shape, _setup(lora=True, lora_r=4))
    _, grads, state = _measured(peft_model)
    assert planned["trainable_parameters"] == sum(p.numel() for p in trainable)
    assert planned["weights"] == (base_params + sum(p.numel() for p in trainable)) * 4
    assert planned["gradients"] == grads
    assert planned["optimizer"] == state


def test_sharding_reference_model_and_zero_master_copy():
    shape = ModelShape("llama", 32000, 4096, 32, 32, 8, 14336, 8192, False)
    n = shape.parameters
    ddp = static_bytes(shape, _setup(dtype="bfloat16", world=8, beta=0.04))
    assert ddp["weights"] == ddp["reference"] == n * 2
    assert ddp["optimizer"] == n * 4 + 4 * shape.tensor_count
    z1 = static_bytes(shape, _setup(dtype="bfloat16", world=8, backend="zero1"))
    assert z1["gradients"] == n * 2 and z1["optimizer"] == n * 12 / 8 and z1["reference"] == 0
    z2 = static_bytes(shape, _setup(dtype="bfloat16", world=8, backend="zero2"))
    assert z2["gradients"] == n * 2 / 8 and z2["weights"] == n * 2
    z3 = static_bytes(shape, _setup(dtype="bfloat16", world=8, backend="zero3", beta=0.04))
    assert z3["weights"] == z3["reference"] == n * 2 / 8
    fsdp = static_bytes(shape, _setup(dtype="bfloat16", world=4, backend="fsdp"))
    assert fsdp["optimizer"] == n * 12 / 4 and fsdp["weights"] == n * 2 / 4  # fp32 masters and moments, sharded
    fp32 = static_bytes(shape, _setup(world=4, backend="fsdp"))
    assert fp32["optimizer"] == (n * 8 + 4 * shape.tensor_count) / 4  # fp32 weights are their own master copy
    lora = static_bytes(shape, _setup(dtype="bfloat16", lora=True, beta=0.04))
    assert lora["reference"] == 0  # TRL disables the adapter instead of loading a second model


def test_gradient_checkpointing_cuts_activations():
    shape = ModelShape("llama", 32000, 2048, 24, 16, 16, 5632, 4096, False)
    off = memory.activation_bytes(shape, _setup(per_device=8, prompt_tokens=256, completion_tokens=768))
    on = memory.activation_bytes(
        shape, _setup(per_device=8, prompt_tokens=256, completion_tokens=768, checkpointing=True)
    )
    assert on < off / 5
    assert memory.activation_bytes(shape, _setup(per_device=16, prompt_tokens=256, completion_tokens=768)) == 2 * off


def test_a_7b_model_on_one_24gb_gpu_does_not_fit_and_the_suggestions_do(write_config):
    path = write_config(
        {
            "mode": "cluster",
            "model": {"name_or_path": "dummy/7b"},
            "training": {"per_device_train_batch_size": 8, "gradient_checkpointing": False},
            "generation": {"max_completion_length": 1024},
            "grpo": {"beta": 0.04},
            "cluster": {"num_processes": 1, "use_vllm": False},
        }
    )
    cfg = GRPOConfigLoader(config_path=path).config
    result = memory.plan(cfg, ModelShape.from_parameter_count(7_000_000_000), 1, 23.6, prompt_tokens=256)
    assert result.fits is False
    assert result.suggestions
    for sets, total in result.suggestions:
        assert total <= 23.6 * GIB
        # each suggestion is valid for the loader
        GRPOConfigLoader(config_path=path, overrides=sets)
    text = memory.render(result)
    assert "does NOT fit" in text and "--set " in text


def test_a_backend_suggestion_plans_the_dtype_that_backend_resolves_to(write_config):
    path = write_config(
        {
            "mode": "cluster",
            "training": {"per_device_train_batch_size": 1, "gradient_checkpointing": True},
            "generation": {"max_completion_length": 256},
            "cluster": {"num_processes": 8, "use_vllm": False},
        }
    )
    cfg = GRPOConfigLoader(config_path=path).config
    shape = ModelShape.from_parameter_count(8_000_000_000)
    ddp = memory.plan(cfg, shape, 8, 80.0, prompt_tokens=256)
    assert ddp.setup.dtype == "float32" and ddp.fits is False  # fp32 weights under bf16 autocast
    zero = [(sets, total) for sets, total in ddp.suggestions if "cluster.backend=deepspeed" in sets]
    assert zero  # ZeRO shards what DDP replicates: the smallest stage that fits is offered
    sets, total = zero[0]
    planned = memory.plan(GRPOConfigLoader(config_path=path, overrides=sets).config, shape, 8, 80.0, prompt_tokens=256)
    assert planned.setup.dtype == "bfloat16" and planned.total == total and planned.fits


def test_shape_from_param_count_and_errors(tmp_path):
    assert memory.parse_count("1.5B") == 1_500_000_000
    assert memory.parse_count("350M") == 350_000_000
    assert memory.parse_count("7e9") == 7_000_000_000
    shape = memory.resolve_shape("1.5B")
    assert shape.parameters == 1_500_000_000 and shape.family == "llama"
    with pytest.raises(ConfigError, match="not in the Hugging Face cache"):
        memory.resolve_shape("nobody/no-such-model")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="does not parse"):
        memory.resolve_shape(str(tmp_path))
    with pytest.raises(ConfigError, match="unknown GPU"):
        memory.gpu_memory("h1000")
    assert memory.gpu_memory("NVIDIA H100 SXM") == 79.6


def test_a_hub_id_is_read_from_the_local_cache_only(tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(
        json.dumps(
            {
                "model_type": "qwen2",
                "vocab_size": 1000,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 256,
                "tie_word_embeddings": True,
            }
        )
    )
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")  # as huggingface_hub lays out its cache
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # HF_HUB_CACHE, read at import
    shape = memory.resolve_shape("org/tiny")
    assert shape.family == "llama" and shape.qkv_bias and shape.kv_heads == 2 and shape.tied_embeddings
    assert shape.source.endswith("abc123/config.json")


def _grpolab(*args):
    return subprocess.run(
        [PYTHON, "-m", "grpolab", *args], cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=120
    )


def test_explain_memory_cli_reads_config_json_without_torch(tiny_llama, write_config):
    path = write_config(
        {"mode": "local", "model": {"name_or_path": tiny_llama}, "training": {"per_device_train_batch_size": 4}}
    )
    code = (
        "import sys; from grpolab.cli.main import main; rc = main(sys.argv[1:]); "
        "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    out = subprocess.run(
        [PYTHON, "-c", code, "config", "explain", "--config", str(path), "--memory", "--gpu-mem", "24"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "policy weights" in out.stdout and "fits" in out.stdout
    shape = ModelShape.from_config_dir(tiny_llama)
    assert f"{shape.parameters / 1e6:.2f}M parameters" in out.stdout
    as_json = _grpolab("config", "explain", "--config", str(path), "--memory", "--gpu", "l4", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["memory"]["fits"] is True and data["memory"]["parameters"] == shape.parameters


def test_explain_memory_usage_errors_exit_2(write_config):
    path = write_config({"mode": "local"})
    bad_gpu = _grpolab("config", "explain", "--config", str(path), "--memory", "--gpu", "h1000")
    assert bad_gpu.returncode == 2 and "unknown GPU" in bad_gpu.stderr and "Traceback" not in bad_gpu.stderr
    both = _grpolab("config", "explain", "--config", str(path), "--memory", "--gpu", "h100", "--gpu-mem", "80")
    assert both.returncode == 2 and "Traceback" not in both.stderr
    no_memory = _grpolab("config", "explain", "--config", str(path), "--gpu", "h100")
    assert no_memory.returncode == 2 and "--memory" in no_memory.stderr
    model = _grpolab("config", "explain", "--config", str(path), "--memory", "--model", "nobody/none")
    assert model.returncode == 2 and "not in the Hugging Face cache" in model.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
