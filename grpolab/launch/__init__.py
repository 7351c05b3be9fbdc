"""Cluster mode: start training on several processes with the existing distributed engines
(accelerate launch, torchrun, SLURM's srun), never a launcher protocol of our own.

- detect.py            which launcher started this process; visible GPUs (lazy torch import)
- plan.py              process counts, mixed precision and the checks that run before anything starts
- accelerate_files.py  per-run accelerate YAML (+ DeepSpeed JSON) from configs/accelerate/*.yaml
- relaunch.py          the self-launch: `python training/grpo_training.py --mode cluster` re-executes
                       itself through `accelerate launch` (GPU) or `torchrun` (CPU)
- slurm.py             the sbatch script of `grpolab launch slurm`

Nothing here imports torch at module level: `grpolab launch slurm` only reads configs.
"""
