"""The one sampler: k completions per prompt from a transformers model, scored by reward functions.

- sampler.py  `sample` (chat template, left padding, EOS trimming, every sampling setting passed
              explicitly as TRL does) and `sample_and_score` (the rewards called as TRL calls them).
              Held-out evaluation, `grpolab probe`, the dry run's reward preview and the demo
              model's own check all go through it, so they agree on what a completion is.
"""
