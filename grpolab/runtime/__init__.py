"""Where a run executes and what follows from it.

- hardware.py  facts only: GPUs and their compute capability, CPU bf16, cores, installed engines
- dist.py      which launcher started this process; rank, world and local world
- resolve.py   every `auto` decided here, each with its reason and the key that overrides it
- trl_args.py  the resolved config and those decisions -> trl.GRPOConfig keyword arguments
"""
