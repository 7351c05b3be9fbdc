"""A run's cost, forecast from its first optimizer steps.

Step 1 pays the warm-up (compilation, allocator growth, the first generation's caches), so the
rate is taken from steps 2..k; time spent scoring held-out prompts is left out, as eval's own
clock does. projected = the time the first k steps took + rate x the steps left.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass


@dataclass
class Forecast:
    after_step: int  # optimizer steps timed (this process's first step is the warm-up)
    total_steps: int  # the steps this process trains
    seconds_per_step: float  # steps 2..after_step
    elapsed_seconds: float  # training time of the timed steps, warm-up included
    projected_seconds: float  # the whole run's training time
    finish_at: str  # local time with offset
    world_size: int
    on_gpu: bool
    actual_seconds: float | None = None  # filled in when training ends

    @property
    def gpu_hours(self) -> float | None:
        """world_size x hours: what a GPU allocation is billed by (None on CPU)."""
        return round(self.world_size * self.projected_seconds / 3600, 3) if self.on_gpu else None

    def to_dict(self) -> dict:
        return {**asdict(self), "gpu_hours": self.gpu_hours}

    def for_steps(self, total_steps: int, world_size: int, on_gpu: bool) -> Forecast:
        """The same measured rate, projected over another number of steps (probe --forecast: the
        timed steps ran alone, the real run trains `total_steps`)."""
        first = self.elapsed_seconds - self.seconds_per_step * (self.after_step - 1)
        return project(self.after_step, total_steps, first, self.elapsed_seconds, world_size, on_gpu)

    def line(self) -> str:
        finish = dt.datetime.fromisoformat(self.finish_at)
        day = "" if finish.date() == dt.datetime.now().astimezone().date() else f" on {finish:%Y-%m-%d}"
        text = (
            f"forecast     {self.total_steps} steps take ~{duration(self.projected_seconds)} "
            f"({self.seconds_per_step:.3g} s/step over steps 2-{self.after_step}), finishing ~{finish:%H:%M}{day}"
        )
        if self.on_gpu:
            text += f"; {self.gpu_hours:g} GPU-hours ({self.world_size} GPU{'s' if self.world_size > 1 else ''})"
        return text


def duration(seconds: float) -> str:
    """'45s', '12m 05s', '3h 20m', '2d 04h'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def project(
    after_step: int,
    total_steps: int,
    first_step_seconds: float,
    elapsed_seconds: float,
    world_size: int = 1,
    on_gpu: bool = False,
    now: dt.datetime | None = None,
) -> Forecast:
    """The forecast after `after_step` steps took `elapsed_seconds`, the first of them `first_step_seconds`."""
    rate = (elapsed_seconds - first_step_seconds) / max(after_step - 1, 1)
    projected = elapsed_seconds + rate * max(total_steps - after_step, 0)
    start = (now or dt.datetime.now().astimezone()) - dt.timedelta(seconds=elapsed_seconds)
    finish = start + dt.timedelta(seconds=projected)
    return Forecast(
        after_step,
        total_steps,
        round(rate, 4),
        round(elapsed_seconds, 3),
        round(projected, 1),
        finish.isoformat(timespec="seconds"),
        world_size,
        on_gpu,
    )
