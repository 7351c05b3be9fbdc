"""The one sampler (sampler.py): k completions per prompt, scored by reward functions as TRL does.
Held-out evaluation, `grpolab probe`, the dry run's reward check and the demo model's own check all go
through it, so they agree on what a completion is."""
