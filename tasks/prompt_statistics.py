"""Statistics of a regression run: Wilson intervals, a paired sign test, verdicts, flakiness.

Why these: a pass rate from n samples needs an interval that stays inside [0, 1] and behaves at
0/n and n/n (Wilson, not the normal approximation). Candidate and baseline answer the *same*
cases, so they are compared case by case (paired): each case whose pass rate differs is a vote
for one side, and an exact two-sided sign test on those votes says whether the difference is
more than chance. Cases where both do equally well carry no information and are left out, as in
McNemar's test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

from pydantic import BaseModel
from scipy.stats import binomtest, norm


class Verdict(str, Enum):
    improved = "improved"
    regressed = "regressed"
    inconclusive = "inconclusive"


def wilson_interval(passes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= passes <= n:
        raise ValueError(f"passes={passes} outside 0..{n}")
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = passes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class PairedComparison(BaseModel):
    """Outcome of comparing a candidate with a baseline case by case."""

    cases: int
    candidate_better: int
    candidate_worse: int
    ties: int
    p_value: float
    confidence: float
    verdict: Verdict
    mean_difference: float  # mean over cases of (candidate pass rate - baseline pass rate)


def sign_test_p_value(better: int, worse: int) -> float:
    """Exact two-sided sign test (binomial, p=0.5) on the discordant cases; 1.0 when there are none."""
    n = better + worse
    if n == 0:
        return 1.0
    return float(binomtest(better, n, 0.5, alternative="two-sided").pvalue)


def compare_paired(
    candidate_rates: Sequence[float], baseline_rates: Sequence[float], confidence: float = 0.95
) -> PairedComparison:
    """Verdict from per-case pass rates of the same cases, in the same order."""
    if len(candidate_rates) != len(baseline_rates):
        raise ValueError("candidate and baseline must have the same cases")
    better = sum(1 for c, b in zip(candidate_rates, baseline_rates) if c > b)
    worse = sum(1 for c, b in zip(candidate_rates, baseline_rates) if c < b)
    ties = len(candidate_rates) - better - worse
    p = sign_test_p_value(better, worse)
    if p < 1 - confidence:
        verdict = Verdict.improved if better > worse else Verdict.regressed
    else:
        verdict = Verdict.inconclusive
    diffs = [c - b for c, b in zip(candidate_rates, baseline_rates)]
    return PairedComparison(
        cases=len(diffs), candidate_better=better, candidate_worse=worse, ties=ties, p_value=p,
        confidence=confidence, verdict=verdict, mean_difference=sum(diffs) / len(diffs) if diffs else 0.0,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def is_flaky(passes: int, n: int) -> bool:
    """Passing sometimes: at least one pass and one fail among the scored samples."""
    return 0 < passes < n
