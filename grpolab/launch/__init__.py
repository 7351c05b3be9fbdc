"""Cluster mode: start training on several processes with the existing distributed engines
(accelerate launch, torchrun, SLURM's srun), never a launcher protocol of our own.

- plan.py              the launch for a `Resolved` runtime, and the checks that run before anything starts
- decide.py            train here, start the ranks, or only show the launch
- execute.py           the launch command, the files it needs, and running it
- accelerate_files.py  per-run accelerate YAML (+ DeepSpeed JSON) from the accelerate presets
- slurm.py             the sbatch script of `grpolab launch slurm`

Nothing here imports torch: `grpolab launch slurm` only reads configs.
"""
