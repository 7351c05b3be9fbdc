"""Cluster mode: start training on several processes with the existing distributed engines (accelerate
launch, torchrun, SLURM's srun), never a launcher protocol of our own. Nothing here imports torch:
`grpolab launch slurm` only reads configs."""
