"""Rewards from YAML: one module per kind of `rewards:` entry (built-in, math, Python, reward model, HTTP,
LLM judge); build.py's `build_rewards` is what the pipeline calls. The config commands import nothing
here; torch, transformers, httpx and openai load only inside the functions that need them."""
