"""Trainer callbacks: metrics.jsonl, stop on NaN loss, stop cleanly on Ctrl-C / SIGTERM."""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

from transformers import TrainerCallback


class MetricsFileCallback(TrainerCallback):
    """Append every logged step to metrics.jsonl (rank 0 only)."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3), **logs}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=float) + "\n")


class NanLossCallback(TrainerCallback):
    """A NaN loss ends training with a checkpoint, instead of training on garbage."""

    def __init__(self):
        self.nan_step: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if isinstance(loss, float) and math.isnan(loss) and self.nan_step is None:
            self.nan_step = state.global_step
            control.should_save = True
            control.should_training_stop = True


class StopOnSignalCallback(TrainerCallback):
    """First Ctrl-C or SIGTERM: finish the step, save a checkpoint, stop. A second Ctrl-C aborts."""

    def __init__(self):
        self.signal_name: str | None = None
        self._previous = {}

    def install(self) -> "StopOnSignalCallback":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        print(f"\n{self.signal_name} received: saving a checkpoint after this step, then stopping (Ctrl-C again to abort)", flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal_name is not None:
            control.should_save = True
            control.should_training_stop = True
