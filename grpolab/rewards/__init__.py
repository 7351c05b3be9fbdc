"""Rewards from YAML: one module per kind of `rewards:` entry.

builtin.py   rule-based rewards by name (numeric_match, format, tag_count, repetition_penalty, ...)
math.py      math-verify rewards (math_verify, cosine_length, kimi_length)
python.py    user functions (`module:function`, `file.py:function`) and TRL's own (`trl:NAME`)
model.py     sequence-classification reward models (`model: PATH`)
http.py      rewards computed by an HTTP service (`http: {url, ...}`)
judge.py     LLM judges over an OpenAI-compatible API (`judge: {base_url, model, rubric, ...}`)
wrap.py      the check every reward's answer goes through (one number or None per completion)
build.py     `build_rewards(specs, max_completion_length)`, what the pipeline calls

Nothing here is imported by the config commands; torch, transformers, httpx and openai load
only inside the functions that need them.
"""
