"""The trainer's side of the live guard (grpolab.guard): each logged step goes to the Watcher, which
rank 0 acts on, and the run's time is forecast from its first steps. Every rank stops at the same step
(a flag all-reduced at each log step): a rank that stopped alone would hang the collective save."""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from transformers import TrainerCallback

from grpolab.guard.forecast import Forecast, project, saves_between
from grpolab.guard.watch import Verdict, Watcher
from grpolab.run import metrics
from grpolab.train.callbacks import _any_rank, weight_norms


class GuardCallback(TrainerCallback):
    """Put first among the Trainer's callbacks: a finding it adds to a step's logs then reaches
    every `report_to` tracker (TensorBoard, MLflow, trackio, WandB ...) with that step."""

    def __init__(
        self,
        watcher: Watcher | None,
        forecast_after: int,
        run_dir: Path,
        is_main: bool,
        on_gpu: bool,
        record: Callable[..., None] = lambda **values: None,  # run_info.json (rank 0 writes)
        wandb_run=None,
        scoring_seconds: Callable[[], float] = lambda: 0.0,  # held-out scoring, left out of the clock
    ):
        self.watcher, self.forecast_after = watcher, forecast_after
        self.run_dir, self.is_main, self.on_gpu = run_dir, is_main, on_gpu
        self.record, self.wandb_run, self.scoring_seconds = record, wandb_run, scoring_seconds
        self.forecast: Forecast | None = None
        self.stopped: Verdict | None = None  # rank 0: the finding that stopped the run
        self.stopped_at: int | None = None  # every rank: the step it stopped at
        self.seconds_in_guard = 0.0  # this callback's own cost (the bench compares it to the loop)
        self._norm0: float | None = None
        self._started, self._last, self._first_step = 0.0, 0.0, 0
        self._steps: list[float] = []  # seconds of each timed step, checkpoint saves and scoring left out
        self._saves: list[float] = []  # seconds of each checkpoint save among them

    # ------------------------------------------------------------------ the clock
    def _training_seconds(self) -> float:
        return time.perf_counter() - self._started - self.scoring_seconds()

    def _lap(self) -> float:
        """Training seconds since the last lap."""
        now = self._training_seconds()
        lap, self._last = now - self._last, now
        return lap

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._started, self._last, self._first_step = time.perf_counter(), 0.0, state.global_step
        if self.watcher is not None and model is not None:
            self._norm0 = _weight_norm(model)

    def on_step_end(self, args, state, control, **kwargs):
        if self.forecast is not None or not self.forecast_after:
            return
        self._steps.append(self._lap())
        if len(self._steps) == self.forecast_after:
            every = state.save_steps if args.save_strategy == "steps" else 0
            # A generation round feeds steps_per_generation x num_iterations micro-steps.
            period = Fraction(args.steps_per_generation * args.num_iterations, args.gradient_accumulation_steps)
            self.forecast = project(
                self._steps,
                state.max_steps - self._first_step,
                args.world_size,
                self.on_gpu,
                period=period.numerator,  # optimizer steps after which the generation pattern repeats
                save_seconds=tuple(self._saves),
                saves_left=saves_between(state.global_step, state.max_steps, every),
            )
            if self.is_main:
                print(f"\n{self.forecast.line()}", flush=True)
                self.record(forecast=self.forecast.to_dict())

    def on_save(self, args, state, control, **kwargs):
        if self.forecast is None and self.forecast_after:
            self._saves.append(self._lap())  # the save came after the step's end: not part of the step

    def on_train_end(self, args, state, control, **kwargs):
        if self.forecast is not None:
            self.forecast.actual_seconds = round(self._training_seconds(), 2)
            if self.is_main:
                self.record(forecast=self.forecast.to_dict())

    def outcome(self) -> dict:
        """What run_info.json and summary.json keep: the findings, the one that stopped the run, the forecast."""
        out: dict = {}
        if self.watcher is not None:
            out["guard"] = {
                "findings": [v.to_dict() for v in self.watcher.reported.values()],
                "stopped": self.stopped.to_dict() if self.stopped else None,
                "seconds": round(self.seconds_in_guard, 3),  # the guard's own cost in the training loop
            }
        if self.forecast is not None:
            out["forecast"] = self.forecast.to_dict()
        return out

    # ------------------------------------------------------------------ the rules
    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if self.watcher is None or not logs or "train_runtime" in logs:  # the Trainer's closing summary
            return
        began, stop = time.perf_counter(), False
        if self.is_main:
            growth = _weight_norm(model) / self._norm0 if self._norm0 and model is not None else None
            for verdict in self.watcher.observe(state.global_step, logs, growth):
                self._report(verdict)
                logs[f"guard/{verdict.kind}"] = 2 if verdict.action == "stop" else 1  # to every tracker
            if self.watcher.stop is not None and self.stopped is None:
                self.stopped, stop = self.watcher.stop, True
        if _any_rank(stop):
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        self.seconds_in_guard += time.perf_counter() - began

    def _report(self, verdict: Verdict) -> None:
        """Once per finding: printed in the doctor's format, in metrics.jsonl, and a WandB alert."""
        print(f"\n{verdict.render()}", flush=True)
        metrics.append(self.run_dir, {"step": verdict.step, "time": round(time.time(), 3), "guard": verdict.to_dict()})
        if self.wandb_run is None:
            return
        # A WandB alert (e-mail / Slack where the user set them up); the chart point goes with the step's logs.
        import wandb

        f = verdict.finding
        level = wandb.AlertLevel.ERROR if verdict.action == "stop" else wandb.AlertLevel.WARN
        text = "\n".join([*f.evidence, f"why: {f.why}", *(["edit: " + " ".join(f.set_lines())] if f.edits else [])])
        try:
            self.wandb_run.alert(title=f"grpolab guard ({verdict.action}): {f.id}", text=text, level=level)
        except Exception as exc:  # offline runs, or a server without alerts: the finding is recorded anyway
            print(f"note: the WandB alert was not sent ({type(exc).__name__}: {exc})")


def _weight_norm(model) -> float:
    """The L2 norm of this rank's trainable weights (ZeRO-3 / FSDP: its shard), in fp32."""
    import torch

    norms = weight_norms(model)
    return 0.0 if norms is None else float(torch.linalg.vector_norm(norms).item())
