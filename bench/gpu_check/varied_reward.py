"""A reward that varies between completions of a random-init model, for bench/gpu_check/run.py.

numeric_match scores every completion of random weights 0, so every advantage is 0, every
gradient is 0, and no stage would move a weight: the "fraction of weights changed" would read 0
for a healthy engine and a broken one alike. This one is a fixed hash of the completion text
(deterministic across processes and runs, unlike hash()), so groups have non-zero spread.
"""

import zlib


def text_hash_reward(completions, **kwargs):
    """(crc32 of the completion) mod 7, scaled to [0, 1]."""
    return [(zlib.crc32(str(c).encode()) % 7) / 6.0 for c in completions]
