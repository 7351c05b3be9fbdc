"""How close is `grpolab config explain --memory`'s activation estimate to what a training micro-step
really allocates? On CPU, at several batch sizes and sequence lengths, for a GPT-2 and a Llama model.

Each point runs the training micro-step the way TRL's GRPOTrainer does: TRL's fused LM head
(`add_fused_lm_head`, log-probs and entropy of the completion tokens, in tiles), the ratio-times-advantage
loss, and backward, with the gradients already allocated (they are their own component of the plan).
torch's profiler records every CPU allocation and free; the peak of their running sum is the measured
activation memory (activations + the fused head's buffers), compared with the plan's activations +
logits components. The activations alone are also counted directly: the distinct tensors autograd saves
for backward, against the plan's activations component. All points run in one process: each measurement
starts from zero at the start of its own profile.

    .venv/bin/python bench/memory_estimate.py          # writes bench/results/memory_estimate.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import write_result  # noqa: E402

from grpolab.tune import memory  # noqa: E402

MODELS = {
    # GPT-2 layout (the demo's family), a vocabulary large enough for the head's buffers to count
    "gpt2": {"model_type": "gpt2", "vocab_size": 2048, "n_embd": 256, "n_layer": 4, "n_head": 4, "n_positions": 512},
    # Llama layout (grouped-query attention, SwiGLU, untied head)
    "llama": {
        "model_type": "llama",
        "vocab_size": 4096,
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
    },
}
# (per_device_train_batch_size, prompt tokens, completion tokens, gradient checkpointing)
POINTS = [
    (4, 32, 32, False),
    (8, 32, 96, False),
    (8, 64, 192, False),
    (16, 64, 192, False),
    (4, 128, 384, False),
    (8, 64, 192, True),
]


def build(kind: str):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    spec = {k: v for k, v in MODELS[kind].items() if k != "model_type"}
    if kind == "gpt2":
        # dropout off, as in the demo model and as GRPO wants it (log-probs compared across passes)
        return GPT2LMHeadModel(GPT2Config(**spec, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    return LlamaForCausalLM(LlamaConfig(**spec))


def micro_step(model, batch: int, prompt: int, completion: int):
    """The loss TRL computes for one micro-batch, and its backward."""
    import torch

    seq = prompt + completion
    g = torch.Generator().manual_seed(batch * 1000 + seq)
    ids = torch.randint(3, model.config.vocab_size, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    for row in range(0, batch, 2):  # left-padded prompts and right-padded completions, as in a real batch
        mask[row, : prompt // 4] = 0
        mask[row, seq - completion // 4 :] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-completion] = -100  # only the completion tokens are scored
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    logps = out.log_probs[:, -completion:]
    scored = (labels[:, -completion:] != -100).float()
    advantages = torch.randn(batch, 1, generator=g)
    ratio = torch.exp(logps - logps.detach())
    loss = -(ratio * advantages * scored).sum() / scored.sum()
    loss.backward()


def saved_bytes(model, batch: int, prompt: int, completion: int) -> int:
    """Bytes of the distinct tensors autograd saves for backward in one micro-step (weights excluded):
    the activations alone, without the fused head's transient buffers."""
    import torch

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            seen.setdefault(storage.data_ptr(), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        micro_step(model, batch, prompt, completion)
    model.zero_grad(set_to_none=False)
    return sum(seen.values())


def measure(kind: str, batch: int, prompt: int, completion: int, checkpointing: bool) -> dict:
    from torch.profiler import ProfilerActivity, profile
    from trl.trainer.utils import add_fused_lm_head

    model = build(kind)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    add_fused_lm_head(model, temperature=1.0, outputs=("log_probs", "entropy"))
    micro_step(model, batch, prompt, completion)  # allocates the gradients (a separate component)
    for p in model.parameters():
        p.grad.zero_()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        micro_step(model, batch, prompt, completion)
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    running, peak = 0, 0
    for event in sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"]):
        if event["args"].get("Device Type", 0) != 0:  # CPU only
            continue
        running += event["args"]["Bytes"]
        peak = max(peak, running)

    saved = None if checkpointing else saved_bytes(model, batch, prompt, completion)  # recompute hides them

    shape = memory.ModelShape.from_config_dict(MODELS[kind])
    setup = memory.Setup(
        world=1,
        per_device=batch,
        steps_per_generation=1,
        prompt_tokens=prompt,
        completion_tokens=completion,
        dtype="float32",
        activation_bytes=4,
        backend="ddp",
        checkpointing=checkpointing,
        lora=False,
        lora_r=16,
        lora_targets="all-linear",
        beta=0.0,
        vllm=False,
        vllm_util=0.3,
        device="cpu",
    )
    activations = memory.activation_bytes(shape, setup)
    logits = memory.logits_bytes(shape, setup)
    estimate = activations + logits
    return {
        "model": kind,
        "parameters": shape.parameters,
        "per_device_train_batch_size": batch,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "gradient_checkpointing": checkpointing,
        "measured_mib": round(peak / 2**20, 2),
        "estimate_mib": round(estimate / 2**20, 2),
        "estimate_activations_mib": round(activations / 2**20, 2),
        "estimate_logits_mib": round(logits / 2**20, 2),
        "error": round((estimate - peak) / peak, 4),
        "measured_saved_activations_mib": round(saved / 2**20, 2) if saved is not None else None,
        "activation_error": round((activations - saved) / saved, 4) if saved is not None else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two points per model (a smoke run)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)  # memory does not depend on threads; one thread keeps per-thread buffers out
    points = POINTS[:2] if args.quick else POINTS
    rows, started = [], time.time()
    for kind in MODELS:
        for batch, prompt, completion, ckpt in points:
            row = measure(kind, batch, prompt, completion, ckpt)
            rows.append(row)
            print(
                f"{kind:<6} P={batch:<3} {prompt:>4}+{completion:<4} ckpt={'on ' if ckpt else 'off'} "
                f"measured {row['measured_mib']:8.1f} MiB  estimate {row['estimate_mib']:8.1f} MiB  "
                f"error {row['error']:+.1%}"
                + (
                    f"; saved activations {row['measured_saved_activations_mib']:.1f} MiB vs "
                    f"{row['estimate_activations_mib']:.1f} ({row['activation_error']:+.1%})"
                    if row["activation_error"] is not None
                    else ""
                ),
                flush=True,
            )
    errors = [abs(r["error"]) for r in rows]
    act_errors = [abs(r["activation_error"]) for r in rows if r["activation_error"] is not None]
    result = {
        "question": "activation + logits estimate of `config explain --memory` vs measured peak of a training "
        "micro-step on CPU (torch profiler, every allocation)",
        "target": "within 25% at every point",
        "points": rows,
        "max_abs_error": round(max(errors), 4),
        "mean_abs_error": round(sum(errors) / len(errors), 4),
        "within_target": all(e <= 0.25 for e in errors),
        "activations_alone": "tensors autograd saves (distinct storages, weights excluded), checkpointing off",
        "max_abs_activation_error": round(max(act_errors), 4) if act_errors else None,
        "seconds": round(time.time() - started, 1),
    }
    path = write_result("memory_estimate", result)
    print(f"max |error| {result['max_abs_error']:.1%}, mean {result['mean_abs_error']:.1%}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
