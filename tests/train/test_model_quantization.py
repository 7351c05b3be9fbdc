"""`model.quantization` (bitsandbytes 4/8-bit, QLoRA): validated before anything loads (it needs
model.lora.enabled; without bitsandbytes or a backend for the device, an error naming the fix),
and a real QLoRA run on CPU where bitsandbytes' CPU backend works (it does with the installed
bitsandbytes: the run below trains a LoRA adapter on a 4-bit base)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from grpolab.config import ConfigError
from grpolab.config.schema import ModelConfig
from grpolab.train import model as models


def test_quantization_without_lora_fails_validation(write_config, subprocess_env, tmp_path):
    path = write_config({"model": {"quantization": {"load_in_4bit": True}}})
    out = subprocess.run(
        [sys.executable, "-m", "grpolab", "config", "validate", str(path)],
        capture_output=True,
        text=True,
        env=subprocess_env,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 2
    assert "only a LoRA adapter can train" in out.stdout + out.stderr
    assert "set `model.lora.enabled: true`" in out.stdout + out.stderr


@pytest.mark.parametrize("q", [{}, {"load_in_4bit": True, "load_in_8bit": True}])
def test_exactly_one_width(q):
    with pytest.raises(ValueError, match="exactly one of `load_in_4bit: true` or `load_in_8bit: true`"):
        ModelConfig(lora={"enabled": True}, quantization=q)


def test_bitsandbytes_config_from_the_section():
    import torch

    cfg = ModelConfig(
        lora={"enabled": True}, quantization={"load_in_4bit": True, "quant_type": "fp4", "double_quant": False}
    )
    bnb = models.quantization_config(cfg, "float32", "cpu")
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "fp4" and not bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.float32
    cfg8 = ModelConfig(lora={"enabled": True}, quantization={"load_in_8bit": True})
    assert models.quantization_config(cfg8, "bfloat16", "cpu").load_in_8bit


def test_missing_bitsandbytes_or_backend_names_the_fix(monkeypatch):
    cfg = ModelConfig(lora={"enabled": True}, quantization={"load_in_4bit": True})
    real = importlib.util.find_spec

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name))
    with pytest.raises(ConfigError, match="needs bitsandbytes, which is not installed.*pip install bitsandbytes"):
        models.check_quantization(cfg, "cpu")

    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes.backends.cpu" else real(name)
    )
    with pytest.raises(ConfigError, match="needs a CUDA GPU: no GPU is visible.*has no CPU backend"):
        models.check_quantization(cfg, "cpu")
    models.check_quantization(cfg, "cuda:0")  # a GPU is bitsandbytes' home backend


@pytest.mark.slow
def test_qlora_trains_an_adapter_on_a_4bit_base_on_cpu(tiny_llama, fast_config, train, tmp_path):
    (tmp_path / "varied.py").write_text(
        "def distinct(completions, **kw):\n    return [float(len(set(c))) for c in completions]\n"
    )
    config = fast_config(
        tiny_llama,
        {
            "model": {"lora": {"enabled": True, "r": 4}, "quantization": {"load_in_4bit": True}},
            "rewards": [{"name": f"{tmp_path}/varied.py:distinct"}],
            "training": {"learning_rate": 1e-2},
            "generation": {"temperature": 1.5},
        },
    )
    result = train("--config", config)
    assert result.code == 0, result
    assert "+ LoRA r=4, base 4-bit nf4 (bitsandbytes)" in result.out
    from safetensors.torch import load_file

    weights = load_file(result.run_dir / "adapter" / "adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # LoRA B starts at zero: it was trained
