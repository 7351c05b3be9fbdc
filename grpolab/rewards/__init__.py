"""Rewards from YAML, one module per kind of `rewards:` entry; the pipeline calls build.build_rewards.
Config commands import nothing here: torch, transformers, httpx and openai load only where needed."""
