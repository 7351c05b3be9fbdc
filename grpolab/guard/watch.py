"""One Watcher per run: the rows logged so far, and what each finding does when it first holds. The
callback hands it each logged step (TRL's metrics) and, when measured, the weight growth; it answers with
the verdicts new at this step. A kind reports once: after that it is not checked again, so a warning is
printed once and nothing is re-read from disk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from grpolab.config.schema import GuardConfig
from grpolab.tune.doctor import Finding, Run

from .rules import live_findings, only_reward_collapse


@dataclass
class Verdict:
    """A finding that first held at `step`, and what `guard:` does with it."""

    kind: str
    action: str  # warn | stop
    step: int
    finding: Finding

    def to_dict(self) -> dict:
        return {"kind": self.kind, "action": self.action, "step": self.step, **self.finding.to_dict()}

    def render(self) -> str:
        """The doctor's format for one finding, headed by the guard's action."""
        f = self.finding
        verb = "stopping the run" if self.action == "stop" else "warning"
        return "\n".join([f"guard: {verb} at step {self.step}: {f.id}: {f.title}", *f.body()])


@dataclass
class Watcher:
    guard: GuardConfig
    run_dir: Path
    loader: object  # the run's GRPOConfigLoader (edits are validated against it)
    world_size: int = 1
    rows: list[dict] = field(default_factory=list)
    extra_rows: Callable[[], list[dict]] | None = None  # rows logged elsewhere (the evaluation points)
    reported: dict[str, Verdict] = field(default_factory=dict)

    @property
    def stop(self) -> Verdict | None:
        """The first verdict that stops the run, if any."""
        return next((v for v in self.reported.values() if v.action == "stop"), None)

    def observe(self, step: int, logs: dict, weight_growth: float | None = None) -> list[Verdict]:
        """Add one logged step; the verdicts new at it (none before guard.min_steps)."""
        self.rows.append({"step": step, **logs})
        g = self.guard
        kinds = [k for k, action in g.kinds.items() if action != "off" and self._open(k)]
        if step < g.min_steps or not kinds:
            return []
        rows = self.rows + list(self.extra_rows() if self.extra_rows else [])
        # a doctor Run over the rows in memory (nothing is read from run_dir until a finding first holds)
        run = Run(Path(self.run_dir), rows, {}, {"world_size": self.world_size}, self.loader, None, 0)
        new = []
        for finding in live_findings(run, kinds, g.window, g.thresholds.model_dump(), weight_growth):
            action = g.kinds[finding.id]
            if only_reward_collapse(finding):
                action = "warn"
                if finding.id in self.reported:  # already warned on; wait for hard evidence
                    continue
            self.reported[finding.id] = verdict = Verdict(finding.id, action, step, finding)
            new.append(verdict)
        return new

    def _open(self, kind: str) -> bool:
        """Still checked: not reported yet, or a divergence only warned on that may still harden."""
        earlier = self.reported.get(kind)
        return earlier is None or (
            kind == "divergence" and earlier.action == "warn" and self.guard.divergence == "stop"
        )
