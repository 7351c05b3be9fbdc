"""Every command in docs/cluster.md, as written: those that can run here (no GPU, no Hub) run in
a scratch folder laid out like the repository, and the rest are listed with the reason, so a
command added to the page fails this test until it is run or explained."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT, copy_tracked

DOC = REPO_ROOT / "docs" / "cluster.md"
# Commands that need what this machine lacks (they are checked elsewhere at the seams).
ELSEWHERE = {
    "python training/grpo_training.py --model gpt2 --mode cluster": "trains gpt2 from the Hub on GPUs",
    "accelerate launch --config_file configs/accelerate/zero2.yaml -m grpolab train --mode cluster --model gpt2": (
        "DeepSpeed on GPUs; the same hand launch (zero2.yaml, 2 CPU ranks) runs in test_cluster_backends.py"
    ),
    "sbatch job.sbatch": "needs a SLURM cluster; the script runs under fake srun in test_cluster_slurm.py",
}
# What each runnable command must print (exit code, a line of its output).
EXPECTED = {
    "python training/grpo_training.py --model gpt2 --mode cluster --print-launch-command": (
        0,
        "1 process: trains in this process, no launcher",
    ),
    "python training/grpo_training.py --model gpt2 --mode cluster --set cluster.backend=deepspeed --set "
    "cluster.zero_stage=3": (2, "cluster.backend: is deepspeed, and grpolab starts deepspeed on GPUs only"),
    "grpolab launch slurm --config configs/my_exp.yaml --nodes 2 --gpus-per-node 8 --partition gpu --time "
    "24:00:00 --model Qwen/Qwen2.5-1.5B -o job.sbatch": (0, "wrote "),
    "grpolab launch slurm --config configs/my_exp.yaml --nodes 3 --gpus-per-node 8 --model Qwen/Qwen2.5-7B "
    "--vllm-server-node": (0, "wrote "),
}


def doc_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.DOTALL)
    commands = []
    for block in blocks:
        text = re.sub(r"\\\n\s*", "", block)  # join continued lines
        for line in text.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def test_every_command_is_run_or_explained():
    assert set(doc_commands()) == set(EXPECTED) | set(ELSEWHERE)


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_command_runs_as_written(command, tmp_path, subprocess_env):
    (tmp_path / "training").symlink_to(REPO_ROOT / "training")
    copy_tracked("configs", tmp_path)  # never the user's own files in configs/
    shutil.copy(tmp_path / "configs" / "grpo_cluster.yaml", tmp_path / "configs" / "my_exp.yaml")  # the user's file
    env = dict(subprocess_env, PATH=f"{Path(os.sys.executable).parent}:{subprocess_env.get('PATH', '')}")
    argv = shlex.split(command)
    if argv[0] == "python":
        argv[0] = os.sys.executable
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    code, expected = EXPECTED[command]
    assert done.returncode == code, done.stdout[-2000:] + done.stderr[-2000:]
    assert expected in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
