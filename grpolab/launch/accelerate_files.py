"""The per-run accelerate config (and DeepSpeed JSON) derived from the packaged presets in
configs/accelerate/: the preset of cluster.backend (+ zero_stage), comments kept, with the
process counts, machine addresses and mixed precision of this run filled in."""

from __future__ import annotations

import json
from pathlib import Path

from ruamel.yaml.scalarstring import SingleQuotedScalarString

from grpolab.config.layers import preset_dir
from grpolab.config.yaml_io import dump_yaml, read_yaml_file

ACCELERATE_CONFIG = "accelerate_config.yaml"
DEEPSPEED_CONFIG = "deepspeed_config.json"


def preset_file(backend: str, zero_stage: int) -> Path:
    """configs/accelerate/{ddp,zero2,zero3,fsdp2}.yaml; ZeRO stages 0 and 1 start from zero2
    (their stage is set in the DeepSpeed JSON)."""
    name = {"ddp": "ddp", "fsdp": "fsdp2"}.get(backend) or ("zero3" if zero_stage == 3 else "zero2")
    return preset_dir() / "accelerate" / f"{name}.yaml"


def _put(tree, key, value, at=None, comment=None, indent=0):
    """Set or insert a key, keeping its end-of-line comment two spaces after the value."""
    if at is None:
        tree[key] = value
    else:
        tree.insert(at, key, value)
    if comment:
        tree.yaml_add_eol_comment(comment, key)
    token = tree.ca.items.get(key, [None, None, None])[2]
    if token is not None:
        shown = f"'{value}'" if isinstance(value, SingleQuotedScalarString) else str(value)
        token.column = indent + len(f"{key}: {shown.lower() if isinstance(value, bool) else shown}") + 2


def accelerate_config_text(plan, deepspeed_json: Path | None = None, note: str = "") -> str:
    """The accelerate YAML for `plan` (a LaunchPlan). `deepspeed_json` is where the DeepSpeed
    config will be (backend deepspeed only)."""
    preset = preset_file(plan.backend, plan.zero_stage)
    tree = read_yaml_file(preset)
    _put(tree, "num_processes", plan.world_size)
    _put(tree, "num_machines", plan.num_machines)
    _put(tree, "machine_rank", plan.machine_rank)
    if plan.num_machines > 1:
        at = list(tree).index("machine_rank") + 1
        given = (
            "address of machine_rank 0" if plan.main_process_ip else "given by the launch command (--main_process_ip)"
        )
        _put(tree, "main_process_ip", plan.main_process_ip, at, given)
        _put(tree, "main_process_port", plan.main_process_port, at + 1)
    if plan.backend == "deepspeed":
        # accelerate refuses zero_stage, offload and mixed_precision next to deepspeed_config_file (they live
        # in the JSON, whose bf16/fp16 "auto" follow training.bf16).
        ds = tree["deepspeed_config"]
        for key in [k for k in ds if k not in ("zero3_init_flag", "deepspeed_multinode_launcher")]:
            del ds[key]
        _put(ds, "deepspeed_config_file", str(deepspeed_json), 0)
        _put(ds, "zero3_init_flag", plan.zero_stage == 3, indent=2)
        del tree["mixed_precision"]
    else:  # accelerate reads YAML 1.1 (PyYAML), where a bare `no` is the boolean false
        value = plan.mixed_precision
        _put(tree, "mixed_precision", SingleQuotedScalarString(value) if value == "no" else value)
    header = f"# Written by grpolab from {preset.parent.name}/{preset.name}{note}.\n"
    if deepspeed_json is not None:
        header += f"# ZeRO stage, offload and precision are in {deepspeed_json.name}.\n"
    return header + dump_yaml(tree)


def deepspeed_config(zero_stage: int) -> dict:
    """A DeepSpeed JSON for the HF Trainer: "auto" values are filled in by transformers from the
    training arguments (batch sizes, gradient clipping, bf16/fp16) and the model (bucket sizes)."""
    zero: dict = {"stage": zero_stage}
    if zero_stage >= 2:
        zero.update(overlap_comm=True, contiguous_gradients=True, reduce_bucket_size="auto")
    if zero_stage == 3:
        zero.update(
            stage3_prefetch_bucket_size="auto",
            stage3_param_persistence_threshold="auto",
            stage3_gather_16bit_weights_on_model_save=True,  # the final model is a loadable 16-bit file
        )
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "steps_per_print": 1000000,  # transformers logs the steps; keep DeepSpeed quiet
        "wall_clock_breakdown": False,
    }


def launch_files(folder: Path, plan, stem: str = "", note: str = "") -> dict[Path, str]:
    """{path: text} of the files an accelerate launch of `plan` needs inside `folder`
    (nothing for a CPU run, which torchrun starts). `stem` prefixes the names (SLURM jobs)."""
    if plan.device != "cuda":
        return {}
    json_path = folder / f"{stem}{DEEPSPEED_CONFIG}" if plan.backend == "deepspeed" else None
    files = {folder / f"{stem}{ACCELERATE_CONFIG}": accelerate_config_text(plan, json_path, note)}  # the YAML first
    if json_path is not None:
        files[json_path] = json.dumps(deepspeed_config(plan.zero_stage), indent=2) + "\n"
    return files


def write_files(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.write_text(text)
