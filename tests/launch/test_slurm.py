"""`grpolab launch slurm`: the sbatch script's content, `bash -n`, shellcheck, and a run of the
script against fake `srun`/`scontrol` that records what each node would execute."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grpolab.cli.main import main

FAKE_SRUN = r"""#!/bin/bash
# Fake srun: records a vLLM server step; runs each training task here with its SLURM_PROCID,
# and the task's "$PYTHON" replaced by a recorder.
ntasks=1
while [[ $# -gt 0 && $1 == --* ]]; do
    case $1 in --ntasks=*) ntasks=${1#*=} ;; esac
    echo "$1" >> "$FAKE_OUT/srun_options.txt"
    shift
done
if [[ "$*" == *vllm.entrypoints* ]]; then
    printf '%s\n' "$@" > "$FAKE_OUT/vllm.txt"
    # A stand-in server that answers /health once it is up (FAKE_VLLM_PORT), or one that dies at once.
    [[ -n "${FAKE_VLLM_PORT:-}" ]] || exit 3
    mkdir -p "$FAKE_OUT/www" && touch "$FAKE_OUT/www/health"
    exec python3 -m http.server "$FAKE_VLLM_PORT" --bind 127.0.0.1 --directory "$FAKE_OUT/www" >/dev/null 2>&1
fi
for ((i = 0; i < ntasks; i++)); do
    SLURM_PROCID=$i PYTHON="$FAKE_OUT/record" "$@" || exit $?
done
"""
RECORD = r"""#!/bin/bash
printf '%s\n' "$@" > "$FAKE_OUT/rank$SLURM_PROCID.txt"
"""


def slurm(tmp_path, *argv) -> tuple[int, Path]:
    out = tmp_path / "job.sbatch"
    code = main(["launch", "slurm", *argv, "-o", str(out)])
    return code, out


def cfg_file(tmp_path, extra: str = "") -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"mode: cluster\noutput_dir: {tmp_path / 'runs'}\ntraining:\n  "
        "per_device_train_batch_size: 4\n  gradient_accumulation_steps: 2\ngrpo:\n  "
        f"num_generations: 8\n{extra}"
    )
    return path


def run_with_fake_slurm(tmp_path, script: Path, nodes: list[str], ok: bool = True, **extra_env) -> Path:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "srun").write_text(FAKE_SRUN)
    (fake / "scontrol").write_text("#!/bin/bash\nprintf '%s\\n' " + " ".join(nodes) + "\n")
    (fake / "record").write_text(RECORD)
    for f in fake.iterdir():
        f.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{fake}:{os.environ['PATH']}",
        FAKE_OUT=str(fake),
        SLURM_JOB_ID="4242",
        SLURM_JOB_NODELIST="node[1-9]",
        **extra_env,
    )
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode == 0) is ok, done.stderr
    (fake / "stderr.txt").write_text(done.stderr)
    return fake


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recorded(fake: Path, rank: int) -> list[str]:
    return (fake / f"rank{rank}.txt").read_text().splitlines()


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_sbatch_two_nodes_eight_gpus(tmp_path, capsys):
    config = cfg_file(tmp_path)
    code, script = slurm(
        tmp_path,
        "--config",
        str(config),
        "--set",
        "grpo.beta=0.02",
        "--nodes",
        "2",
        "--gpus-per-node",
        "8",
        "--partition",
        "gpu",
        "--time",
        "12:00:00",
        "--model",
        "gpt2",
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "16 process(es) (8 per machine x 2 machines)" in out
    assert "effective batch size 128 = 4 x 2 x 16" in out
    text = script.read_text()
    for directive in ("--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8", "--partition=gpu", "--time=12:00:00"):
        assert f"#SBATCH {directive}" in text
    assert (
        'mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")' in text
        and "export MAIN_NODE=${NODES[0]}" in text
    )
    assert "--num_machines 2" in text and "--num_processes 16" in text
    assert (
        '--machine_rank "$SLURM_PROCID"' in text
        and '--main_process_ip "$MAIN_NODE"' in text
        and '--main_process_port "$MAIN_PORT"' in text
        and "export MAIN_PORT=$((20000 + SLURM_JOB_ID % 20000))" in text  # a port of the job's own
    )
    for directive in ("--requeue", "--signal=TERM@300", "--exclusive", "--mem=0", "--open-mode=append"):
        assert f"#SBATCH {directive}" in text
    assert '--cpus-per-task="$CPUS"' in text and "--wait=60" in text and "--kill-on-bad-exit=1" in text
    assert '--tee 3 --log_dir "$GRPOLAB_RUN_DIR/logs/node$SLURM_PROCID"' in text
    accelerate_config = tmp_path / "job.accelerate_config.yaml"
    assert f"ACCELERATE_CONFIG={accelerate_config}" in text and accelerate_config.exists()
    assert f'GRPOLAB_RUN_DIR={tmp_path / "runs"}/"exp_slurm-${{SLURM_JOB_ID}}"' in text
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_sbatch_passes_shellcheck(tmp_path):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    for name, extra in (("plain", []), ("vllm", ["--vllm-server-node"])):
        script = tmp_path / f"{name}.sbatch"
        assert (
            main(
                [
                    "launch",
                    "slurm",
                    "--nodes",
                    "3",
                    "--gpus-per-node",
                    "4",
                    "--model",
                    "gpt2",
                    *extra,
                    "-o",
                    str(script),
                ]
            )
            == 0
        )
        done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


def test_each_node_runs_accelerate_launch_with_its_rank(tmp_path):
    """Run the script with fake srun/scontrol: each node gets its machine rank, rank 0's
    address, the totals, and exactly the user's training options."""
    config = cfg_file(tmp_path)
    odd = 'data.system_prompt=It\'s "$HOME" & `x`'
    code, script = slurm(
        tmp_path, "--config", str(config), "--set", odd, "--nodes", "2", "--gpus-per-node", "8", "--model", "gpt2"
    )
    assert code == 0
    fake = run_with_fake_slurm(tmp_path, script, ["gpu-a", "gpu-b"])
    for rank in (0, 1):
        argv = recorded(fake, rank)
        assert argv[:2] == ["-m", "accelerate.commands.launch"]
        assert option(argv, "--config_file") == str(tmp_path / "job.accelerate_config.yaml")
        assert option(argv, "--machine_rank") == str(rank)
        assert option(argv, "--main_process_ip") == "gpu-a"
        assert (option(argv, "--num_machines"), option(argv, "--num_processes")) == ("2", "16")
        train = argv[argv.index("-m", 2) :]
        assert train == [
            "-m",
            "grpolab",
            "train",
            "--model",
            "gpt2",
            "--config",
            str(config),
            "--set",
            odd,
            "--set",
            "cluster.num_processes=8",
            "--set",
            "cluster.num_machines=2",
        ]
    assert (tmp_path / "runs" / "exp_slurm-4242").is_dir()  # one run directory, made by the batch script
    assert not (fake / "vllm.txt").exists()


def test_the_ranks_accelerate_command_parses(tmp_path):
    """What a node runs, through accelerate's own launch parser and validation (CPU-safe)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    code, script = slurm(
        tmp_path,
        "--config",
        str(cfg_file(tmp_path)),
        "--nodes",
        "2",
        "--gpus-per-node",
        "8",
        "--set",
        "cluster.backend=fsdp",
        "--model",
        "gpt2",
    )
    assert code == 0
    argv = recorded(run_with_fake_slurm(tmp_path, script, ["n1", "n2"]), 1)
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv[2:]))
    assert args.use_fsdp and (args.num_processes, args.num_machines, args.machine_rank, args.main_process_ip) == (
        16,
        2,
        1,
        "n1",
    )
    assert args.module and args.training_script == "grpolab" and args.training_script_args[0] == "train"


def test_vllm_server_node(tmp_path, capsys):
    config = cfg_file(tmp_path)
    port = free_port()
    (tmp_path / "dead").mkdir()
    code, script = slurm(
        tmp_path,
        "--config",
        str(config),
        "--nodes",
        "3",
        "--gpus-per-node",
        "4",
        "--model",
        "Qwen/Qwen2.5-0.5B",
        "--vllm-server-node",
        "--set",
        f"cluster.vllm_server_port={port}",
    )
    assert code == 0
    assert "8 process(es) (4 per machine x 2 machines)" in capsys.readouterr().out  # training nodes = N - 1
    # A server that dies before it is ready stops the job before any trainer starts.
    dead = run_with_fake_slurm(tmp_path / "dead", script, ["127.0.0.1", "n2", "n3"], ok=False)
    assert "the vLLM server exited before it was ready" in (dead / "stderr.txt").read_text()
    assert not (dead / "rank0.txt").exists()
    fake = run_with_fake_slurm(tmp_path, script, ["127.0.0.1", "n2", "n3"], FAKE_VLLM_PORT=str(port))
    server = (fake / "vllm.txt").read_text().splitlines()
    assert server[:2] == ["env", "VLLM_SERVER_DEV_MODE=1"]
    assert server[server.index("serve") + 1] == "Qwen/Qwen2.5-0.5B"
    # The model is not cached here, so its head count is unknown: tensor parallel 1, data parallel 4.
    assert option(server, "--tensor-parallel-size") == "1" and option(server, "--data-parallel-size") == "4"
    assert option(server, "--port") == str(port)
    assert option(server, "--weight-transfer-config") == '{"backend": "nccl"}'
    assert "--nodelist=127.0.0.1" in (fake / "srun_options.txt").read_text()  # the first node serves
    assert "--nodelist=n2,n3" in (fake / "srun_options.txt").read_text()  # the others train
    for rank in (0, 1):
        argv = recorded(fake, rank)
        assert option(argv, "--main_process_ip") == "n2" and option(argv, "--machine_rank") == str(rank)
        assert option(argv, "--num_machines") == "2" and option(argv, "--num_processes") == "8"
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        assert {
            "cluster.use_vllm=true",
            "cluster.vllm_mode=server",
            "cluster.vllm_server_host=127.0.0.1",
            "cluster.num_machines=2",
        } <= set(sets)


def test_config_is_validated_for_nodes_times_gpus(tmp_path, capsys):
    # 12 completions per round do not split over 2 x 4 = 8 processes with 2 completions each
    config = cfg_file(tmp_path, "  generation_batch_size: 12\n")
    (tmp_path / "exp.yaml").write_text(
        (tmp_path / "exp.yaml")
        .read_text()
        .replace("per_device_train_batch_size: 4", "per_device_train_batch_size: 2")
        .replace("num_generations: 8", "num_generations: 4")
    )
    code, script = slurm(tmp_path, "--config", str(config), "--nodes", "2", "--gpus-per-node", "4", "--model", "m")
    assert code == 2
    err = capsys.readouterr().err
    assert "world size 8" in err and "grpo.generation_batch_size" in err and "Fix:" in err
    assert not script.exists()


def test_vllm_server_node_needs_two_nodes_and_a_model(tmp_path, capsys):
    assert slurm(tmp_path, "--nodes", "1", "--gpus-per-node", "8", "--vllm-server-node", "--model", "gpt2")[0] == 2
    assert "--vllm-server-node needs at least 2 nodes" in capsys.readouterr().err
    assert slurm(tmp_path, "--nodes", "2", "--gpus-per-node", "8", "--vllm-server-node")[0] == 2
    assert "needs a model to serve" in capsys.readouterr().err
    assert slurm(tmp_path, "--nodes", "2", "--gpus-per-node", "8")[0] == 2  # no model: not the toy demo
    err = capsys.readouterr().err
    assert "would train the embedded toy demo model" in err and "pass --model" in err


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    assert slurm(tmp_path, "--nodes", "2", "--gpus-per-node", "8", "--model", "m")[0] == 0
    assert slurm(tmp_path, "--nodes", "2", "--gpus-per-node", "8", "--model", "m")[0] == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert slurm(tmp_path, "--nodes", "2", "--gpus-per-node", "8", "--model", "m", "--force")[0] == 0


def test_submit_without_sbatch_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, script = slurm(tmp_path, "--nodes", "2", "--gpus-per-node", "8", "--model", "m", "--submit")
    assert code == 1
    assert "--submit needs `sbatch` on PATH" in capsys.readouterr().err
    assert script.exists()  # written, just not submitted


def test_submit_calls_sbatch(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/submitted\necho 'Submitted batch job 7'\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    code, script = slurm(tmp_path, "--nodes", "2", "--gpus-per-node", "8", "--model", "m", "--submit")
    assert code == 0
    assert (tmp_path / "submitted").read_text().strip() == str(script)


def test_slurm_command_does_not_import_torch(tmp_path, subprocess_env):
    code = (
        "import sys; from grpolab.cli.main import main; "
        "rc = main(['launch', 'slurm', '--nodes', '2', '--gpus-per-node', '8', '--model', 'm', '--set', "
        f"'cluster.backend=deepspeed', '-o', {str(tmp_path / 'j.sbatch')!r}]); "
        "print(rc, sorted(m for m in ('torch', 'transformers', 'trl', 'accelerate', 'deepspeed') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stderr
    assert json.loads((tmp_path / "j.deepspeed_config.json").read_text())["zero_optimization"]["stage"] == 2


def _model_folder(tmp_path, heads: int) -> Path:
    folder = tmp_path / f"model_{heads}h"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "num_attention_heads": heads}))
    return folder


@pytest.mark.parametrize("heads, gpus, expected", [(14, 4, (2, 2)), (28, 8, (4, 2)), (12, 8, (4, 2)), (16, 8, (8, 1))])
def test_vllm_tensor_parallel_divides_the_attention_heads(tmp_path, heads, gpus, expected):
    from grpolab.launch.slurm import attention_heads, vllm_parallel

    assert attention_heads(str(_model_folder(tmp_path, heads))) == heads
    assert vllm_parallel(heads, gpus) == expected


def test_vllm_server_flags_from_the_model_and_a_validated_override(tmp_path, capsys):
    model = _model_folder(tmp_path, 14)
    base = ["--nodes", "2", "--gpus-per-node", "4", "--model", str(model), "--vllm-server-node"]
    code, script = slurm(tmp_path, *base, "--set", "model.revision=abc123", "--set", "grpo.vllm_max_model_length=4096")
    assert code == 0
    text = script.read_text()
    assert "--tensor-parallel-size 2" in text and "--data-parallel-size 2" in text
    assert "--revision abc123" in text and "--max-model-len 4096" in text
    assert "grpo.vllm_server_timeout=1800" in text  # TRL waits as long as the script does
    assert "/health" in text and 'kill -0 "$VLLM_PID"' in text  # readiness poll, and an early crash stops the job
    code, _ = slurm(tmp_path, *base, "--vllm-tensor-parallel", "4", "--force")
    assert code == 2 and "must divide the node's 4 GPUs and the model's 14 attention heads" in capsys.readouterr().err


def test_shared_partition_resources_are_explicit(tmp_path):
    code, script = slurm(
        tmp_path, "--nodes", "2", "--gpus-per-node", "8", "--model", "m", "--cpus-per-node", "64", "--mem", "400G"
    )
    assert code == 0
    text = script.read_text()
    assert "#SBATCH --cpus-per-task=64" in text and "#SBATCH --mem=400G" in text and "--exclusive" not in text


def test_a_requeued_job_resumes_from_its_checkpoint(tmp_path):
    """The same job id after a requeue: the script finds the run's checkpoint and every node
    trains with --resume on that run directory."""
    code, script = slurm(
        tmp_path, "--config", str(cfg_file(tmp_path)), "--nodes", "2", "--gpus-per-node", "8", "--model", "m"
    )
    assert code == 0
    fake = run_with_fake_slurm(tmp_path, script, ["n1", "n2"])  # first start: nothing to resume
    assert "--resume" not in recorded(fake, 0)
    run_dir = tmp_path / "runs" / "exp_slurm-4242"
    (run_dir / "checkpoint-40").mkdir()
    shutil.rmtree(fake)
    fake = run_with_fake_slurm(tmp_path, script, ["n1", "n2"])  # the requeued job
    for rank in (0, 1):
        argv = recorded(fake, rank)
        assert option(argv, "--resume") == str(run_dir)


# Each option that becomes an `#SBATCH` line, with values sbatch takes and values it refuses.
DIRECTIVES = {
    "--time": (
        ["90", "30:00", "24:00:00", "2-00", "2-12:30", "1-00:00:00", "UNLIMITED", "0"],
        ["abc", "-5", "1:2:3:4", "24h", ""],
    ),
    "--mem": (["400G", "512000", "64g", "1T", "900M"], ["abc", "-1G", "4.5G", "400GB", "400 G"]),
    "--job-name": (["grpolab", "grpo-7b_lr1e-6", "exp.3"], ["a b", "it's", 'a"b', "x$(id)", "tab\there"]),
}


@pytest.mark.parametrize("flag", DIRECTIVES)
def test_sbatch_options_are_checked_as_sbatch_would_before_anything_is_written(tmp_path, capsys, flag):
    good, bad = DIRECTIVES[flag]
    base = ["--config", str(cfg_file(tmp_path)), "--model", "gpt2", "--nodes", "1", "--gpus-per-node", "8"]
    for value in bad:
        code, script = slurm(tmp_path, *base, f"{flag}={value}")  # `=`: argparse takes "-5" as a value
        err = capsys.readouterr().err
        assert code == 2 and not script.exists(), (value, err)
        assert f"{flag}: {value!r} is not " in err and f"Fix: pass e.g. {flag} " in err, err
        fix = err.split("Fix: pass e.g. ")[1].split()  # the fix the error gives is accepted
        assert slurm(tmp_path, *base, *fix, "--force")[0] == 0, capsys.readouterr().err
        script.unlink()
    for value in good:
        code, script = slurm(tmp_path, *base, flag, value, "--force")
        assert code == 0, capsys.readouterr().err
        directive = "--job-name" if flag == "--job-name" else flag
        assert f"#SBATCH {directive}={value}" in script.read_text(), value
