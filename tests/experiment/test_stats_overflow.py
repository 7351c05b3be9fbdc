"""Seed statistics for any finite floats: rewards of 1e160 (squared past the float limit) made
`compare` an OverflowError. Every statistic is scale-free, so scaling the inputs by a power of two
scales the mean and interval exactly and leaves Welch's t, df and p as they were."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from test_stats_seeds import fake_run

from grpolab.cli.main import main
from grpolab.experiment import stats

FINITE = st.floats(allow_nan=False, allow_infinity=False)  # ±1e308, subnormals, zeros, mixed signs
EDGES = st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324, 1e-300, 0.0, 1e160, -1e160])
VALUE = st.one_of(FINITE, EDGES)
SAMPLE = st.lists(VALUE, min_size=1, max_size=8)
# Moderate values (0 or 1e-3 to 1e3 in magnitude), scaled by a power of two near the float limit or
# near the subnormals, where every product is still exact.
MAGNITUDE = st.floats(min_value=1e-3, max_value=1e3)
MODERATE = st.lists(st.one_of(st.just(0.0), MAGNITUDE, MAGNITUDE.map(lambda v: -v)), min_size=2, max_size=6)


@settings(max_examples=400, deadline=None)
@given(SAMPLE)
def test_mean_and_ci_never_overflow(values):
    est = stats.mean_ci(values)
    low, high = min(values), max(values)
    assert math.isfinite(est.mean)
    slack = 1e-12 * max(abs(low), abs(high))
    assert low - slack <= est.mean <= high + slack
    if len(values) > 1:  # the spread of ±1e308 is past float max: inf, never NaN or an exception
        assert est.sd >= 0 and est.half >= 0 and not math.isnan(est.sd) and not math.isnan(est.half)
    est.text()


@settings(max_examples=400, deadline=None)
@given(SAMPLE, SAMPLE)
def test_welch_never_overflows(a, b):
    test = stats.welch(a, b)
    if len(a) < 2 or len(b) < 2:
        assert test is None
        return
    assert 0.0 <= test.p <= 1.0 and test.df > 0 and not math.isnan(test.t)


@settings(max_examples=200, deadline=None)
@given(MODERATE, MODERATE, st.integers(min_value=-900, max_value=900))
def test_statistics_are_scale_free(a, b, power):
    scale = math.ldexp(1.0, power)
    est, scaled = stats.mean_ci(a), stats.mean_ci([v * scale for v in a])
    assert scaled.mean == est.mean * scale and scaled.half == est.half * scale
    plain, big = stats.welch(a, b), stats.welch([v * scale for v in a], [v * scale for v in b])
    assert (big.t, big.df, big.p) == (plain.t, plain.df, plain.p)


def test_compare_of_runs_with_huge_rewards(tmp_path, capsys):
    """The probe's case: rewards of 1e160 in two of three seed runs, then `compare a b d`."""
    runs = [fake_run(tmp_path, f"s{seed}", 1e-4, seed, [0.1, 0.2]) for seed in range(3)]
    for run in runs[:2]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rows[-1]["reward"] = 1e160
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        summary = json.loads((run / "summary.json").read_text())
        summary["final"]["reward"] = summary["best"]["reward"] = 1e160
        (run / "summary.json").write_text(json.dumps(summary))
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "c.png")]) == 0
    assert "1e+160" in capsys.readouterr().out
