"""Where a run executes and what follows from it: hardware facts, the launch (dist), every `auto`
decided (resolve) and the trl.GRPOConfig keyword arguments (trl_args)."""
