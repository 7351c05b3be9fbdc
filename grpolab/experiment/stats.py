"""Seed noise: mean ± a 95% confidence interval over runs that differ only in their seed (GRPO runs
end at visibly different rewards), and whether two such groups differ by more than that noise (Welch's
t-test at 0.05). Pure Python (Student's t through the incomplete beta function): no SciPy needed."""

from __future__ import annotations

import math
from dataclasses import dataclass

LEVEL = 0.95
ALPHA = 0.05
NOISE_TEST = "Welch's t-test, p >= 0.05"  # said in the output next to every "within noise"


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    h = d = 1.0 / (d if abs(d) > tiny else tiny)
    for m in range(1, 400):
        m2 = 2 * m
        # The even step, then the odd one; the odd one's factor says when the fraction has converged.
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom (df may be fractional, as Welch's is)."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The t value below which a fraction q of the distribution lies (bisection on t_cdf)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < q:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        low, high = (mid, high) if t_cdf(mid, df) < q else (low, mid)
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class Estimate:
    """The mean of n values and the half-width of its confidence interval (None for n < 2)."""

    mean: float
    n: int
    sd: float | None
    half: float | None

    @property
    def low(self) -> float | None:
        return None if self.half is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None else self.mean + self.half

    def text(self, digits: int = 4) -> str:
        """'0.4312 ± 0.0521' (or the single value when n is 1)."""
        return f"{self.mean:.{digits}g}" + ("" if self.half is None else f" ± {self.half:.{digits}g}")


def _unit(values: list[float]) -> tuple[float, list[float]]:
    """(scale, values / scale) with the largest magnitude in [1, 2): squares and sums of rewards near
    the float limit (1e160 squared is past it) stay finite. The scale is a power of two, so the
    division is exact and ordinary rewards give the same numbers as unscaled."""
    largest = max((abs(v) for v in values), default=0.0)
    scale = math.ldexp(1.0, math.frexp(largest)[1] - 1) if largest else 1.0
    return scale, [v / scale for v in values]


def mean_ci(values: list[float], level: float = LEVEL) -> Estimate:
    """Mean ± the t-distribution confidence interval: t(1 - (1-level)/2, n-1) x sd / sqrt(n)."""
    if not (n := len(values)):
        raise ValueError("no values")
    scale, unit = _unit([float(v) for v in values])
    mean = sum(unit) / n
    if n < 2:
        return Estimate(mean * scale, n, None, None)
    sd = math.sqrt(sum((v - mean) ** 2 for v in unit) / (n - 1))
    half = t_ppf(1.0 - (1.0 - level) / 2.0, n - 1) * sd / math.sqrt(n)
    return Estimate(mean * scale, n, sd * scale, half * scale)  # inf only where the true value is past float max


@dataclass(frozen=True)
class Welch:
    t: float
    df: float
    p: float  # two-sided

    @property
    def within_noise(self) -> bool:
        return self.p >= ALPHA


def welch(a: list[float], b: list[float]) -> Welch | None:
    """Welch's unequal-variance t-test of two samples; None when either has fewer than 2 values."""
    if len(a) < 2 or len(b) < 2:
        return None
    _, unit = _unit([float(v) for v in [*a, *b]])  # t and df are scale-free: computed at scale 1
    ea, eb = mean_ci(unit[: len(a)]), mean_ci(unit[len(a) :])
    va, vb, diff = ea.sd**2 / ea.n, eb.sd**2 / eb.n, ea.mean - eb.mean
    if va + vb == 0.0:  # no spread at all: any difference is real, none is none
        return Welch(math.inf if diff else 0.0, float(ea.n + eb.n - 2), 0.0 if diff else 1.0)
    t = diff / math.sqrt(va + vb)
    share_a, share_b = va / (va + vb), vb / (va + vb)  # shares, not squares: a tiny variance squared is 0
    df = 1.0 / (share_a**2 / (ea.n - 1) + share_b**2 / (eb.n - 1))
    return Welch(t, df, 2.0 * (1.0 - t_cdf(abs(t), df)))
