"""Generated accelerate / DeepSpeed / FSDP files, checked with the real libraries' parsers
(accelerate's config loader and launch-argument validation, accelerate's FSDP and DeepSpeed
plugins, transformers' DeepSpeed "auto" filling and DeepSpeed's own config class) on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grpolab.config.layers import preset_dir
from grpolab.launch.accelerate_files import (
    ACCELERATE_CONFIG,
    DEEPSPEED_CONFIG,
    deepspeed_config,
    launch_files,
    preset_file,
    write_files,
)
from grpolab.launch.plan import LaunchPlan
from grpolab.runtime.dist import launcher_precision

PRESETS = sorted((preset_dir() / "accelerate").glob("*.yaml"))


def plan(backend="ddp", zero_stage=2, per_machine=8, machines=1, mp="bf16", ip=None) -> LaunchPlan:
    return LaunchPlan(per_machine, machines, 0, "cuda", backend, zero_stage, mp, ip, 29500, "accelerate launch")


def accelerate_launch_args(config_file: Path, *extra: str):
    """accelerate's own parsing and validation of `accelerate launch --config_file F ... -m grpolab.cli.main train`."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(
        ["--config_file", str(config_file), *extra, "-m", "grpolab.cli.main", "train"]
    )
    return _validate_launch_command(args)


def test_the_four_presets_exist_and_load_in_accelerate():
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    assert [p.name for p in PRESETS] == ["ddp.yaml", "fsdp2.yaml", "zero2.yaml", "zero3.yaml"]
    for path in PRESETS:
        text = path.read_text()
        assert text.startswith("# accelerate launcher preset"), path  # readable, commented
        cfg = load_config_from_file(str(path))
        assert isinstance(cfg, ClusterConfig)
        assert cfg.mixed_precision == "bf16" and cfg.downcast_bf16 == "no"  # 'no' is quoted (YAML 1.1)


@pytest.mark.parametrize(
    ("backend", "stage", "preset", "kind"),
    [
        ("ddp", 2, "ddp.yaml", "MULTI_GPU"),
        ("deepspeed", 0, "zero2.yaml", "DEEPSPEED"),
        ("deepspeed", 1, "zero2.yaml", "DEEPSPEED"),
        ("deepspeed", 2, "zero2.yaml", "DEEPSPEED"),
        ("deepspeed", 3, "zero3.yaml", "DEEPSPEED"),
        ("fsdp", 2, "fsdp2.yaml", "FSDP"),
    ],
)
def test_generated_config_loads_with_the_counts_filled_in(tmp_path, backend, stage, preset, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    assert preset_file(backend, stage).name == preset
    files = launch_files(tmp_path, plan(backend, stage, per_machine=4, machines=2, ip="10.1.2.3"))
    write_files(files)
    cfg = load_config_from_file(str(tmp_path / ACCELERATE_CONFIG))
    assert cfg.distributed_type.value == kind
    assert (cfg.num_processes, cfg.num_machines, cfg.machine_rank) == (8, 2, 0)  # num_processes is the TOTAL
    assert (cfg.main_process_ip, cfg.main_process_port) == ("10.1.2.3", 29500)
    text = (tmp_path / ACCELERATE_CONFIG).read_text()
    assert text.startswith(f"# Written by grpolab from accelerate/{preset}")
    assert "# TOTAL processes" in text  # the preset's comments survive
    if backend == "deepspeed":
        assert cfg.deepspeed_config == {
            "deepspeed_config_file": str(tmp_path / DEEPSPEED_CONFIG),
            "zero3_init_flag": stage == 3,
            "deepspeed_multinode_launcher": "standard",
        }
        assert cfg.mixed_precision is None  # accelerate refuses it next to deepspeed_config_file
        assert json.loads((tmp_path / DEEPSPEED_CONFIG).read_text())["zero_optimization"]["stage"] == stage
    else:
        assert cfg.mixed_precision == "bf16"
        assert not (tmp_path / DEEPSPEED_CONFIG).exists()


@pytest.mark.parametrize("mp", ["no", "bf16", "fp16"])
def test_mixed_precision_survives_yaml_1_1(tmp_path, mp):
    from accelerate.commands.config.config_args import load_config_from_file

    write_files(launch_files(tmp_path, plan(mp=mp)))
    assert load_config_from_file(str(tmp_path / ACCELERATE_CONFIG)).mixed_precision == mp  # not False


def test_single_machine_config_has_no_addresses(tmp_path):
    write_files(launch_files(tmp_path, plan(per_machine=2)))
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(tmp_path / ACCELERATE_CONFIG))
    assert cfg.main_process_ip is None and cfg.main_process_port is None  # torchrun picks the port
    args, _, _ = accelerate_launch_args(tmp_path / ACCELERATE_CONFIG)
    assert args.multi_gpu and args.num_processes == 2 and args.num_machines == 1 and args.mixed_precision == "bf16"


def test_cpu_plan_writes_no_accelerate_file(tmp_path):
    cpu = LaunchPlan(2, 1, 0, "cpu", "ddp", 2, "no", None, 29500, "torchrun")
    assert launch_files(tmp_path, cpu) == {}


def test_launch_arguments_override_the_file_as_srun_passes_them(tmp_path):
    """The sbatch script passes --machine_rank / --main_process_ip per node on top of the file."""
    write_files(launch_files(tmp_path, plan(per_machine=8, machines=2, ip=None)))
    args, _, _ = accelerate_launch_args(
        tmp_path / ACCELERATE_CONFIG,
        "--num_machines",
        "2",
        "--num_processes",
        "16",
        "--machine_rank",
        "1",
        "--main_process_ip",
        "node-a",
        "--main_process_port",
        "29501",
    )
    assert (
        args.num_processes,
        args.num_machines,
        args.machine_rank,
        args.main_process_ip,
        args.main_process_port,
    ) == (16, 2, 1, "node-a", 29501)


def test_fsdp_settings_build_accelerates_fsdp2_plugin(tmp_path, monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    write_files(launch_files(tmp_path, plan("fsdp")))
    args, _, _ = accelerate_launch_args(tmp_path / ACCELERATE_CONFIG)
    assert args.use_fsdp
    env = prepare_multi_gpu_env(args)
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    fsdp = FullyShardedDataParallelPlugin()
    assert fsdp.fsdp_version == 2
    assert fsdp.reshard_after_forward is True
    assert str(fsdp.state_dict_type).endswith("FULL_STATE_DICT")
    assert fsdp.cpu_ram_efficient_loading is True


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_files_pass_accelerates_launch_and_plugin_checks(tmp_path, monkeypatch, stage):
    pytest.importorskip("deepspeed")
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    write_files(launch_files(tmp_path, plan("deepspeed", stage)))
    args, defaults, mp_from_config = accelerate_launch_args(tmp_path / ACCELERATE_CONFIG)
    assert args.use_deepspeed
    # what accelerate's launch_command does before deepspeed_launcher
    args.deepspeed_fields_from_accelerate_config = ",".join(
        list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
    )
    _, env = prepare_deepspeed_cmd_env(args)
    for key, value in env.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    ds = DeepSpeedPlugin()  # raises if the accelerate file sets keys the JSON owns
    # The JSON's "auto" precision follows the training arguments: the ranks' own resolve decides,
    # not accelerate's default `mixed_precision: no` beside it.
    assert env["ACCELERATE_MIXED_PRECISION"] == "no" and launcher_precision(env) is None
    assert ds.zero_stage == stage
    assert ds.zero3_init_flag is (stage == 3)
    assert ds.hf_ds_config.config["zero_optimization"]["stage"] == stage


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_json_is_a_valid_deepspeed_config(stage):
    """transformers fills the "auto" values from the training arguments and model, then
    DeepSpeed's own config class parses the result."""
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import GPT2Config, GPT2LMHeadModel, TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    args = TrainingArguments(
        output_dir="unused",
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_grad_norm=0.5,
        use_cpu=True,
        report_to="none",
    )
    hf = HfTrainerDeepSpeedConfig(deepspeed_config(stage))
    hf.trainer_config_process(args)
    hf.trainer_config_finalize(args, GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2)), 10)
    assert "auto" not in json.dumps(hf.config)
    ds = DeepSpeedConfig(hf.config)
    assert ds.zero_optimization_stage == stage
    assert (ds.train_micro_batch_size_per_gpu, ds.gradient_accumulation_steps, ds.train_batch_size) == (4, 2, 8)
    assert ds.gradient_clipping == 0.5
    if stage == 3:
        assert ds.zero_config.gather_16bit_weights_on_model_save is True
