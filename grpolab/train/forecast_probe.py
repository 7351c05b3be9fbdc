"""`grpolab probe CONFIG --forecast`: the first optimizer steps of the config, trained alone in a
throwaway directory, and the run's projected time from them (nothing is kept, nothing is logged
to a tracker). It answers "will this fit in my 24-hour slot" before the slot is booked."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from grpolab.config import ConfigError, GRPOConfigLoader
from grpolab.config.derive import derive
from grpolab.config.schema import GUARD_KINDS
from grpolab.guard.forecast import Forecast
from grpolab.run.record import RunInfo
from grpolab.train.pipeline import train
from grpolab.train.request import TrainRequest

# Held-out scoring, trackers and checkpoints are not part of the steps being timed; one process.
_TIMING_ONLY = (
    "logging.report_to=[none]",
    "data.eval_split=null",
    "data.eval_every_steps=0",
    "data.test_size=null",
    "training.save_steps=1000000",
    "cluster.num_processes=1",
    *(f"guard.{kind}=off" for kind in GUARD_KINDS),  # a few steps are timed, not judged
)


def forecast_config(config: str, overrides: tuple[str, ...] = (), model: str | None = None) -> tuple[Forecast, str]:
    """(the forecast for the config's whole run, the training output of the timed steps)."""
    cfg = GRPOConfigLoader(config_path=config, overrides=list(overrides) or None).config
    if not cfg.guard.forecast_after:
        why = "is 0 (no forecast), so --forecast has no steps to time."
        raise ConfigError.of("guard.forecast_after", why, "pass --set guard.forecast_after=10", config)
    # A run shorter than the steps to time is timed whole (at least 2 steps: step 1 is the warm-up).
    steps = cfg.guard.forecast_after
    if cfg.training.max_steps > 0:
        steps = max(2, min(steps, cfg.training.max_steps))
    world = cfg.cluster.num_processes if isinstance(cfg.cluster.num_processes, int) else 1
    with tempfile.TemporaryDirectory(prefix="grpolab-forecast-") as tmp:
        request = TrainRequest(
            config=config,
            model=model,
            overrides=(*overrides, *_TIMING_ONLY, f"training.max_steps={steps + 1}", f"guard.forecast_after={steps}"),
            output_dir=tmp,
        )
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = train(request)
        info = next((RunInfo.load(p) for p in Path(tmp).iterdir() if p.is_dir()), RunInfo())
        timed = info.forecast
        if code != 0 or not timed:
            raise ConfigError.of("", f"the timed steps did not run (exit {code})", None, config)
    rows = (info.dataset or {}).get("rows")  # the real run's step count may follow from the data
    total = derive(cfg, world, rows).total_optimizer_steps
    measured = Forecast(**{k: v for k, v in timed.items() if k != "gpu_hours"})
    return measured.for_steps(total, world, on_gpu=info.device == "cuda"), out.getvalue()
