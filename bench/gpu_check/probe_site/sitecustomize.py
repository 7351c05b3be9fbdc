"""Loaded by every Python process that bench/gpu_check/run.py starts (this folder is first on their
PYTHONPATH), and inert unless GPU_CHECK_PROBE_DIR is set.

At exit, a process that imported torch writes one JSON record there: its peak GPU memory
(torch.cuda.max_memory_allocated, this process alone), the engine accelerate set up for it
(distributed type, ZeRO stage, FSDP version), the DeepSpeed ops it loaded (each one a JIT
build on first use) and its CPU seconds. The stages start grpolab, accelerate's launcher,
torchrun's ranks and the plain TRL script unchanged; this is how the check sees inside each rank
without a hook in grpolab. The record is read from accelerate's shared state dict directly, so
nothing is initialised at exit.
"""

import atexit
import json
import os
import resource
import sys


def _record() -> None:
    folder = os.environ.get("GPU_CHECK_PROBE_DIR")
    torch = sys.modules.get("torch")
    if not folder or torch is None:
        return
    out = {"pid": os.getpid(), "argv": sys.argv[:4], "rank": os.environ.get("RANK"), "peak_gpu_bytes": None}
    try:
        if torch.cuda.is_initialized():
            out["peak_gpu_bytes"] = max(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count()))
            out["peak_gpu_reserved_bytes"] = max(
                torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count())
            )
    except Exception as exc:  # a broken CUDA context must not hide the rest of the record
        out["cuda_error"] = repr(exc)
    state_module = sys.modules.get("accelerate.state")
    shared = getattr(getattr(state_module, "AcceleratorState", None), "_shared_state", None) or {}
    if "distributed_type" in shared:
        plugins = shared.get("deepspeed_plugins")
        plugin = next(iter(plugins.values()), None) if isinstance(plugins, dict) else plugins
        fsdp = shared.get("fsdp_plugin")
        out["engine"] = {
            "type": getattr(shared["distributed_type"], "value", str(shared["distributed_type"])),
            "zero_stage": getattr(plugin, "zero_stage", None),
            "fsdp_version": getattr(fsdp, "fsdp_version", None),
            "num_processes": shared.get("num_processes"),
        }
    builder = sys.modules.get("deepspeed.ops.op_builder.builder")
    out["ds_ops"] = sorted(getattr(getattr(builder, "OpBuilder", None), "_loaded_ops", None) or ())
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process's CPU time: the cost, whatever the load
    out["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"probe-{os.getpid()}.json"), "w") as handle:
        json.dump(out, handle)


atexit.register(_record)
