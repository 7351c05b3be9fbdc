"""Command line: `grpolab config ...` (no torch/trl import), `grpolab train ...`."""
