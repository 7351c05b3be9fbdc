"""The guard's stop, read back from a run's record: some evidence exists only while training (the weight
norm), so `grpolab doctor` on a stopped run may not reach the finding the guard stopped on; the recorded
finding is added to the doctor's, and `--write-config` applies its edit like any other."""

from __future__ import annotations

from grpolab.run.record import RunInfo
from grpolab.tune.doctor import ORDER, Finding


def with_stop_finding(info: dict, found: list[Finding]) -> list[Finding]:
    """The doctor's findings, plus the Finding the guard stopped the run on (from run_info.json's dict)
    where the doctor did not reach it."""
    stop = RunInfo.from_dict(info).guard_stop
    if not stop or stop.get("id") not in ORDER or any(f.id == stop["id"] for f in found):
        return found
    finding = Finding.from_dict(stop)
    finding.evidence.append(f"the guard stopped the run on this at step {stop.get('step')}")
    return sorted([*found, finding], key=lambda f: ORDER.index(f.id))


def stop_line(info: dict) -> str | None:
    """'  stopped by the guard at step 5: constant_reward: ...' for a stopped run's report."""
    if stop := RunInfo.from_dict(info).guard_stop:
        return f"  stopped by the guard at step {stop.get('step')}: {stop.get('id')}: {stop.get('title')}"
    return None
