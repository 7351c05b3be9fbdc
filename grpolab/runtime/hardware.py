"""Facts about the machine, never decisions: `probe()` asks torch, `probe(use_torch=False)` nvidia-smi and
/proc (config commands must not import torch); tests build a `HardwareFacts`."""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# Native bf16 tensor cores start with Ampere (compute capability 8.0). Older GPUs emulate bf16:
# torch.cuda.is_bf16_supported() says yes there, but autocast then runs slower than fp32.
NATIVE_BF16_CAPABILITY = (8, 0)
OPTIONAL_ENGINES = ("vllm", "liger_kernel", "deepspeed")


@dataclass(frozen=True)
class GPU:
    name: str
    capability: tuple[int, int] | None = None  # CUDA compute capability, None when unknown
    memory_gib: float | None = None
    ident: str | None = None  # how CUDA_VISIBLE_DEVICES names it (index or UUID); nvidia-smi's probe only

    @property
    def native_bf16(self) -> bool:
        return self.capability is not None and self.capability >= NATIVE_BF16_CAPABILITY


@dataclass(frozen=True)
class HardwareFacts:
    gpus: tuple[GPU, ...] = ()  # the CUDA GPUs this process may use (CUDA_VISIBLE_DEVICES applied)
    cpu_bf16: bool = False  # AVX512-BF16, AMX or Arm BF16
    cores: int = 1  # cores this process may run on
    installed: frozenset[str] = field(default_factory=frozenset)  # of: vllm, liger_kernel, deepspeed
    source: str = "none"  # what answered about GPUs: torch, nvidia-smi or none

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def gpu_bf16(self) -> bool:
        """Every visible GPU computes bf16 natively."""
        return bool(self.gpus) and all(gpu.native_bf16 for gpu in self.gpus)

    def has(self, package: str) -> bool:
        return package in self.installed

    @classmethod
    def planned(cls, gpus: int, installed=(), cores: int = 1) -> HardwareFacts:
        """The machine a plan is for, seen from a login node or laptop: `gpus` GPUs with native bf16."""
        gpu = GPU("planned GPU", NATIVE_BF16_CAPABILITY)
        return cls(gpus=(gpu,) * gpus, cores=cores, installed=frozenset(installed))


def probe(use_torch: bool = True) -> HardwareFacts:
    gpus, source = _torch_gpus() if use_torch else _smi_gpus()
    installed = frozenset(name for name in OPTIONAL_ENGINES if importlib.util.find_spec(name) is not None)
    # cores: a container's or taskset's limit, not the host's count
    return HardwareFacts(gpus=gpus, cpu_bf16=cpu_has_bf16(), cores=len(core_ids()), installed=installed, source=source)


def _torch_gpus() -> tuple[tuple[GPU, ...], str]:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    props = [torch.cuda.get_device_properties(i) for i in range(count)]
    return tuple(GPU(p.name, (p.major, p.minor), round(p.total_memory / 2**30, 1)) for p in props), "torch"


def _smi_gpus() -> tuple[tuple[GPU, ...], str]:
    """nvidia-smi's view narrowed by CUDA_VISIBLE_DEVICES as CUDA does (ending at the first unknown id)."""
    if (smi := shutil.which("nvidia-smi")) is None:
        return (), "none"
    query = "--query-gpu=index,uuid,name,compute_cap,memory.total"
    try:
        out = subprocess.run([smi, query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return (), "none"
    if out.returncode != 0:
        return (), "nvidia-smi"
    rows = [[cell.strip() for cell in line.split(",")] for line in out.stdout.strip().splitlines() if line.strip()]
    if (visible := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        by_id = {ident: row for row in rows for ident in row[:2]}
        wanted = itertools.takewhile(by_id.__contains__, (v.strip() for v in visible.split(",")))
        rows = [[w, *by_id[w][1:]] for w in wanted]
    gpus = []
    for ident, _uuid, name, cap, memory in (row[:5] for row in rows if len(row) >= 5):
        major, _, minor = cap.partition(".")
        capability = (int(major), int(minor or 0)) if major.isdigit() else None
        memory_gib = round(float(memory) / 1024, 1) if memory.replace(".", "").isdigit() else None
        gpus.append(GPU(name, capability, memory_gib, ident))
    return tuple(gpus), "nvidia-smi"


def core_ids() -> list[int]:
    """The CPU cores this process may run on, by number."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16, AMX, Arm BF16), from /proc/cpuinfo (no torch);
    without it torch emulates bf16 and autocast slows training down. False off Linux."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return bool(set(value.split()) & {"avx512_bf16", "amx_bf16", "bf16"})
    return False
