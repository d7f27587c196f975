"""Seed statistics of leaderboard rows: Student-t confidence intervals of a mean and
paired tests between two rows over the seeds both ran (same seed = same class order
and data order, so the per-seed difference removes the order's share of the variance).

Pure functions over numbers (scipy.stats); no torch.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: two-sided level of the intervals and tests the leaderboard reports
LEVEL = 0.95
ALPHA = 1 - LEVEL
PAIRED_TEST = "paired t-test"
UNPAIRED_TEST = "Welch's t-test"


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float] | None:
    """The ``level`` Student-t interval of the mean of ``values`` (mean ± t_{n-1} s / sqrt(n),
    s the sample std); None for fewer than two values."""
    vals = [float(v) for v in values if v is not None]
    if len(vals) < 2:
        return None
    from scipy import stats

    mean, sd = statistics.fmean(vals), statistics.stdev(vals)
    half = float(stats.t.ppf(0.5 + level / 2, len(vals) - 1)) * sd / math.sqrt(len(vals))
    return mean - half, mean + half


@dataclass(frozen=True)
class Comparison:
    """A two-sided test of ``a - b``: which test, how many values (pairs), the mean
    difference, t and p (p = 0 for a constant non-zero paired difference)."""

    test: str
    n: int
    diff: float
    t: float
    p: float

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def paired_test(a: Mapping[int, float | None], b: Mapping[int, float | None]) -> Comparison | None:
    """Paired t-test of ``a - b`` over the seeds both define (``{seed: value}``); None when
    they share fewer than two seeds."""
    seeds = sorted(s for s in a if s in b and a[s] is not None and b[s] is not None)
    if len(seeds) < 2:
        return None
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs)
    if sd == 0:  # the same difference on every seed: certain unless it is zero
        return Comparison(PAIRED_TEST, len(seeds), mean, math.copysign(math.inf, mean) if mean else 0.0,
                          0.0 if mean else 1.0)
    from scipy import stats

    res = stats.ttest_rel([float(a[s]) for s in seeds], [float(b[s]) for s in seeds])
    return Comparison(PAIRED_TEST, len(seeds), mean, float(res.statistic), float(res.pvalue))


def welch_test(a: Sequence[float | None], b: Sequence[float | None]) -> Comparison | None:
    """Welch's unequal-variance t-test of ``mean(a) - mean(b)``; None unless both have two values."""
    xa, xb = [float(v) for v in a if v is not None], [float(v) for v in b if v is not None]
    if len(xa) < 2 or len(xb) < 2:
        return None
    diff = statistics.fmean(xa) - statistics.fmean(xb)
    if statistics.stdev(xa) == 0 and statistics.stdev(xb) == 0:
        return Comparison(UNPAIRED_TEST, min(len(xa), len(xb)), diff, math.copysign(math.inf, diff) if diff else 0.0,
                          0.0 if diff else 1.0)
    from scipy import stats

    res = stats.ttest_ind(xa, xb, equal_var=False)
    return Comparison(UNPAIRED_TEST, min(len(xa), len(xb)), diff, float(res.statistic), float(res.pvalue))


def compare(a: Mapping[int, float | None], b: Mapping[int, float | None]) -> Comparison | None:
    """The paired test where the rows share two seeds or more, else Welch's test of their
    values; None where neither applies (a row with one value)."""
    return paired_test(a, b) or welch_test(list(a.values()), list(b.values()))


def header_note() -> str:
    """What the leaderboard says about its intervals and its bold marks."""
    return (f"[lo, hi] = the {LEVEL:.0%} Student-t interval of the mean over the row's n seeds (n >= 2). "
            f"Bold: the best mean of a column whose difference from the runner-up is significant (two-sided "
            f"p < {ALPHA:.2f}) by a {PAIRED_TEST} over the seeds both rows ran (same seed = same class order), "
            f"or by {UNPAIRED_TEST} where they share fewer than 2 seeds; no bold where neither test applies.")
