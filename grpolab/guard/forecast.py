"""A run's cost, forecast from its first optimizer steps. The rate is a median, so one slow step (another
job on the machine, a garbage collection, a long completion) does not move it; step 1 pays the warm-up
(compilation, allocator growth, the first generation's caches) and is left out. When a generation round
feeds several optimizer steps, the step that generates costs more than the ones that reuse its completions:
the median is then taken over whole rounds. Held-out scoring is left out of every time, as eval's own clock
does; a checkpoint save is timed apart and added once per save still to come."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import asdict, dataclass


@dataclass
class Forecast:
    after_step: int  # optimizer steps timed (this process's first step is the warm-up)
    total_steps: int  # the steps this process trains
    seconds_per_step: float  # the median rate over steps 2..after_step (whole rounds)
    elapsed_seconds: float  # training time of the timed steps, warm-up included
    projected_seconds: float  # the whole run's training time
    finish_at: str  # local time with offset
    world_size: int
    on_gpu: bool
    saves_left: int = 0  # checkpoint saves still to come, each `seconds_per_save`
    seconds_per_save: float = 0.0
    actual_seconds: float | None = None  # filled in when training ends

    @property
    def gpu_hours(self) -> float | None:
        """world_size x hours: what a GPU allocation is billed by (None on CPU)."""
        return round(self.world_size * self.projected_seconds / 3600, 3) if self.on_gpu else None

    def to_dict(self) -> dict:
        return {**asdict(self), "gpu_hours": self.gpu_hours}

    def for_steps(self, total_steps: int, world_size: int, on_gpu: bool) -> Forecast:
        """The same measured rate, projected over another number of steps (probe --forecast: the
        timed steps ran alone, the real run trains `total_steps`; fewer steps than were timed take
        their share of the time the timed ones took)."""
        timed = min(self.after_step, total_steps)
        elapsed = self.elapsed_seconds * min(1.0, total_steps / self.after_step)
        return _projected(timed, total_steps, self.seconds_per_step, elapsed, world_size, on_gpu)

    def line(self) -> str:
        finish = dt.datetime.fromisoformat(self.finish_at)
        day = "" if finish.date() == dt.datetime.now().astimezone().date() else f" on {finish:%Y-%m-%d}"
        saves = f" + {self.saves_left} checkpoint save(s)" if self.saves_left and self.seconds_per_save else ""
        text = (
            f"forecast     {self.total_steps} steps take ~{duration(self.projected_seconds)} "
            f"(median {self.seconds_per_step:.3g} s/step over steps 2-{self.after_step}{saves}), "
            f"finishing ~{finish:%H:%M}{day}"
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


def step_rate(step_seconds: list[float], period: int = 1) -> float:
    """Seconds per optimizer step from each timed step's seconds (step 1 first): the median of
    steps 2.., or with `period` optimizer steps per generation round, the median of the mean of
    each whole round after the first (a round's first step generates, the others reuse)."""
    timed = step_seconds[1:] or step_seconds
    if period > 1:
        if rounds := [step_seconds[i : i + period] for i in range(period, len(step_seconds) - period + 1, period)]:
            return statistics.median(sum(r) / period for r in rounds)
        return sum(timed) / len(timed)  # not one whole round timed: the mean keeps the generating step's share
    return statistics.median(timed)


def project(
    step_seconds: list[float],
    total_steps: int,
    world_size: int = 1,
    on_gpu: bool = False,
    period: int = 1,
    save_seconds: tuple[float, ...] = (),
    saves_left: int = 0,
    now: dt.datetime | None = None,
) -> Forecast:
    """The forecast after the steps timed in `step_seconds` (saves and held-out scoring not in
    them): the time they took, the median rate for the steps left, and the saves to come at the
    median of those timed (none timed yet: their cost is unknown and left out)."""
    elapsed = sum(step_seconds) + sum(save_seconds)
    save = statistics.median(save_seconds) if save_seconds else 0.0
    rate = step_rate(step_seconds, period)
    return _projected(len(step_seconds), total_steps, rate, elapsed, world_size, on_gpu, saves_left, save, now)


def _projected(
    after: int, total: int, rate: float, elapsed: float, world: int, on_gpu: bool, saves_left=0, save=0.0, now=None
) -> Forecast:
    projected = elapsed + rate * max(total - after, 0) + saves_left * save
    start = (now or dt.datetime.now().astimezone()) - dt.timedelta(seconds=elapsed)
    finish = (start + dt.timedelta(seconds=projected)).isoformat(timespec="seconds")
    rounded = (round(rate, 4), round(elapsed, 3), round(projected, 1))
    return Forecast(after, total, *rounded, finish, world, on_gpu, saves_left, round(save, 3))


def saves_between(first: int, last: int, every: int) -> int:
    """Checkpoint saves the Trainer makes after step `first` up to `last` with `save_strategy:
    steps` every `every` steps (0: no saves): one at each multiple, and one at the last step."""
    if every <= 0 or last <= first:
        return 0
    return last // every - first // every + (1 if last % every else 0)
