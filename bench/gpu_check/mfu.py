"""Loss + backward efficiency of the built model, apart from generation (the GPU check's `mfu` stage).

    python mfu.py MODEL_DIR '{"shapes": [[16, 70], [32, 512]], "warmup": 3, "iters": 10, "matmul_s": 5}'

The GRPO step's training part is a forward pass, TRL's log-softmax gather of the sampled tokens
(`selective_log_softmax`, its Triton kernel on a GPU) and a backward pass, with fp32 weights under
bf16 autocast (what TRL does for `model.dtype: auto`). Timing the whole step mixes in generation,
which dominates it and runs at a small fraction of the peak; this times that part alone, at a
GRPO-sized batch (16 x 70 tokens: the check's training batch) and a larger one (32 x 512; 64 x 512
would need ~55 GB of saved activations plus 20 GB of logits and their gradient on an 80 GB GPU;
a shape that runs out of memory is reported as such, the others still count). GPU
times come from CUDA events. It prints `MFU {...}`: per shape the milliseconds, tokens per second,
achieved TFLOP/s, and the fraction of the bf16 peak this GPU reached in a plain matmul (`matmul_s`
seconds of 8192^3 bf16). The parent adds the datasheet peak's fraction.

FLOPs per token: 6N for the weights (forward + backward; the tied LM head is counted once) plus
6 * layers * hidden * sequence for causal attention scores and values.
"""

import json
import sys
import time

import torch
from transformers import AutoModelForCausalLM
from trl.trainer.utils import selective_log_softmax


def matmul_flops(device: str, dtype: torch.dtype, seconds: float, size: int) -> float:
    """The best sustained rate of a square matmul: the ceiling this device reaches in `dtype`."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 5 * 2 * size**3 / (time.perf_counter() - t))
    return best


class Timer:
    """CUDA events on a GPU (the host does not wait for kernels), the wall clock on CPU."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"

    def __enter__(self):
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            torch.cuda.synchronize()
            self.ms = self.start.elapsed_time(self.end)
        else:
            self.ms = (time.perf_counter() - self.t0) * 1000


def loss_backward(model, ids: torch.Tensor, device: str) -> None:
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        logits = model(input_ids=ids).logits[:, :-1]
        logps = selective_log_softmax(logits, ids[:, 1:])
        loss = -logps.mean()
    loss.backward()
    model.zero_grad(set_to_none=True)


def flops_per_token(model, params: int, sequence: int) -> float:
    c = model.config
    return 6 * params + 6 * c.num_hidden_layers * c.hidden_size * sequence


def measure(model, params: int, batch: int, sequence: int, spec: dict, device: str, peak: float) -> dict:
    ids = torch.randint(0, model.config.vocab_size, (batch, sequence), device=device)
    for _ in range(spec["warmup"]):  # Triton compiles and the allocator settles here
        loss_backward(model, ids, device)
    times = []
    for _ in range(spec["iters"]):
        with Timer(device) as t:
            loss_backward(model, ids, device)
        times.append(t.ms)
    ms = sorted(times)[len(times) // 2]
    flops = flops_per_token(model, params, sequence) * batch * sequence
    return {
        "batch": batch,
        "sequence": sequence,
        "ms": round(ms, 3),
        "tokens_per_s": batch * sequence / (ms / 1000),
        "achieved_tflops": flops / (ms / 1000) / 1e12,
        "fraction_of_measured_matmul": flops / (ms / 1000) / peak,
    }


def main() -> int:
    model_dir, spec = sys.argv[1], json.loads(sys.argv[2])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    model.config.use_cache = False
    params = sum(p.numel() for p in model.parameters())
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    peak = matmul_flops(device, dtype, spec["matmul_s"], 8192 if device == "cuda" else 512)
    out = {"device": device, "params": params, "matmul_flops": peak, "matmul_dtype": str(dtype), "shapes": []}
    for batch, sequence in spec["shapes"]:
        try:
            out["shapes"].append(measure(model, params, batch, sequence, spec, device, peak))
        except torch.OutOfMemoryError as exc:  # the larger shape must not cost the smaller one's figure
            out["shapes"].append({"batch": batch, "sequence": sequence, "error": f"out of memory: {exc}"[:300]})
            torch.cuda.empty_cache()
    if device == "cuda":
        out["peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print("MFU " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
