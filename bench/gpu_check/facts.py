"""The GPU check's first child: import what the stages need, in order, and stop at the first failure.

    python facts.py '{"modules": [["torch", "torch"], ["trl", "trl:GRPOTrainer"], ...], "wanted": {"trl": "1.16.0"},
                      "ops": ["ShareMemCommBuilder"]}'

Each module is [distribution, "module[:attribute]"]. It prints one line `FACTS {...}`: versions,
the GPU, NCCL, where transformers was imported from, the dependencies of what was imported that
this Python does not satisfy, and, on a failure, `import_error` with the package, the version
found here, the version wanted and the reason. The parent then stops setup: a stage that cannot
import trl would only fail later, after the model build, at a higher price.

Then it loads the DeepSpeed ops named in "ops" (`ds_ops`): a DeepSpeed op is JIT-built on its
first use (minutes on a fresh machine, then cached in TORCH_EXTENSIONS_DIR), and a build
inside a stage would eat that stage's timeout. An op this accelerator does not use is recorded as
such, not built.
"""

import importlib
import importlib.util
import json
import shutil
import sys
import time
from importlib import metadata

# Printed for the record: the image's own packages that the carried wheels lean on.
CONTEXT = ("huggingface-hub", "tokenizers", "safetensors", "pyarrow", "fsspec", "triton", "numpy", "psutil")


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def unmet(dist: str) -> list[str]:
    """The requirements of `dist` (extras aside) that this Python does not satisfy, e.g.
    'datasets 5.2.0 wants pyarrow>=24.0.0, found 23.0.1': nothing checks these at import."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return []
    out = []
    for text in metadata.requires(dist) or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        found = version(req.name)
        if found is None or (req.specifier and not req.specifier.contains(found, prereleases=True)):
            out.append(f"{dist} {version(dist)} wants {req.name}{req.specifier}, found {found}")
    return out


def gpu_facts(out: dict) -> None:
    torch = sys.modules.get("torch")
    if torch is None:
        return
    out.update(torch=torch.__version__, cuda=torch.cuda.is_available())
    if not out["cuda"]:
        return
    p = torch.cuda.get_device_properties(0)
    out.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(), cuda_version=torch.version.cuda)
    out.update(capability=list(torch.cuda.get_device_capability(0)), gpu_memory_gib=round(p.total_memory / 2**30, 1))
    # Whether a DeepSpeed op could be JIT-built here at all, if a stage ever needed one.
    from torch.utils.cpp_extension import CUDA_HOME

    out.update(ninja=shutil.which("ninja"), cuda_home=CUDA_HOME)
    try:
        out["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception as exc:  # NCCL is only needed by the multi-process stages; say why it is missing
        out["nccl"] = f"unknown: {exc}"[:200]


def build_ops(names: list[str]) -> dict:
    """Load each named op the way DeepSpeed itself would on this accelerator: the same lookup and
    compatibility test as deepspeed.comm's shared-memory op (`build_shm_op`), then a timed load."""
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    accelerator, out = get_accelerator(), {}
    for name in names:
        builder = accelerator.create_op_builder(name)
        if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
            out[name] = {"status": f"not used on {accelerator.device_name()}"}
            continue
        started = time.monotonic()
        try:
            builder.load(verbose=False)
        except Exception as exc:  # the stages that need it fail with their own error; the others still run
            out[name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:400]}
            continue
        out[name] = {"status": "loaded", "op": builder.name, "s": round(time.monotonic() - started, 1)}
    return out


def main() -> int:
    spec = json.loads(sys.argv[1])
    out: dict = {"python": sys.version.split()[0], "versions": {}, "unmet": []}
    for dist, target in spec["modules"]:
        module, _, attribute = target.partition(":")
        try:
            imported = importlib.import_module(module)
            if attribute:
                getattr(imported, attribute)
        except Exception as exc:  # any failure here is the one the parent reports, then stops
            out["import_error"] = {
                "package": dist,
                "import": target,
                "found": version(dist),
                "wanted": spec.get("wanted", {}).get(dist),
                "reason": f"{type(exc).__name__}: {exc}"[:800],
            }
            break
        out["versions"][dist] = version(dist)
        out["unmet"] += unmet(dist) if version(dist) else []
    for dist in CONTEXT:
        out["versions"].setdefault(dist, version(dist))
    if "transformers" in sys.modules:
        out["transformers_file"] = sys.modules["transformers"].__file__
    out["vllm"] = importlib.util.find_spec("vllm") is not None
    gpu_facts(out)
    if "import_error" not in out and spec.get("ops"):
        out["ds_ops"] = build_ops(spec["ops"])
    print("FACTS " + json.dumps(out), flush=True)
    return 1 if "import_error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
