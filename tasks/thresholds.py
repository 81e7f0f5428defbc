"""Failure thresholds on monitored metrics: static limits and limits relative to a rolling baseline.

A static threshold compares a component's value in this run with a fixed limit. A baseline
threshold compares a statistic (p95, mean ...) of the recent window with the same statistic
over the baseline window before it: `p95 of latency_ms over 15 min > 3 x its 24 h p95`. A
baseline needs enough samples before it can judge anything, so a fresh platform never alerts
on noise. No Prefect here.
"""

from __future__ import annotations

import fnmatch
import math
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from tasks.errors import ConfigurationError
from tasks.strict_input import StrictInput

# Every metric the monitor records, with its unit; a threshold on anything else is a typo.
KNOWN_METRICS: dict[str, str] = {
    "latency_ms": "probe response time of the component, milliseconds",
    "error_rate": "failed probe attempts / attempts in the run (1.0 when down)",
    "status": "0 ok, 1 degraded, 2 down",
    "cpu_percent": "CPU use of the component's processes, percent of one core",
    "memory_rss_bytes": "resident memory of the component's processes",
    "replication_lag_bytes": "bytes a Redis replica is behind its primary",
    "gpu_utilization_percent": "GPU utilisation (nvidia-smi), percent",
    "gpu_memory_used_bytes": "GPU memory in use (nvidia-smi)",
}

Statistic = Literal["p50", "p95", "p99", "mean", "max", "min"]


class Threshold(StrictInput):
    """One limit on one metric for the components whose name matches ``component`` (a glob)."""

    metric: str = Field(description=f"One of: {', '.join(KNOWN_METRICS)}.")
    component: str = Field(default="*", description="Component name or glob, e.g. llm-* or gateway.")
    kind: Literal["static", "baseline"] = Field(default="static", description="Fixed limit, or a multiple of the baseline.")
    above: float | None = Field(default=None, description="static: breach when the value is above this.")
    below: float | None = Field(default=None, description="static: breach when the value is below this.")
    factor: float | None = Field(default=None, gt=0, description="baseline: breach when recent > factor x baseline.")
    statistic: Statistic = Field(default="p95", description="baseline: how a window of samples is summarised.")
    window_minutes: float = Field(default=15, gt=0, description="baseline: the recent window.")
    baseline_window_minutes: float = Field(default=24 * 60, gt=0, description="baseline: the window before it.")
    min_baseline_samples: int = Field(default=5, ge=1, description="baseline: fewer samples than this judge nothing.")

    def describe(self) -> str:
        if self.kind == "static":
            limits = []
            if self.above is not None:
                limits.append(f"> {self.above:g}")
            if self.below is not None:
                limits.append(f"< {self.below:g}")
            return f"{self.metric} {' or '.join(limits)}"
        return (
            f"{self.statistic}({self.metric}, {self.window_minutes:g} min) > {self.factor:g} x "
            f"{self.statistic} of the {self.baseline_window_minutes:g} min before"
        )


def check_thresholds(thresholds: list[Threshold], schedule_interval_s: float, where: str) -> None:
    """Bad configuration, named by position and field, before the monitor measures anything."""
    for i, t in enumerate(thresholds):
        here = f"{where}: thresholds[{i}]"
        if t.metric not in KNOWN_METRICS:
            raise ConfigurationError(f"{here}.metric: unknown metric {t.metric!r}; known: {', '.join(KNOWN_METRICS)}")
        if t.kind == "static" and t.above is None and t.below is None:
            raise ConfigurationError(f"{here}: a static threshold on {t.metric} needs `above` or `below`")
        if t.metric == "error_rate" and t.kind == "static":
            for name in ("above", "below"):
                limit = getattr(t, name)
                if limit is not None and not 0 <= limit <= 1:
                    raise ConfigurationError(f"{here}.{name}: {limit:g}: error_rate is a fraction (0.05, not 5)")
        if t.kind == "baseline":
            if t.factor is None:
                raise ConfigurationError(f"{here}.factor: a baseline threshold on {t.metric} needs `factor`")
            for name in ("window_minutes", "baseline_window_minutes"):
                minutes = getattr(t, name)
                if minutes * 60 < schedule_interval_s:
                    raise ConfigurationError(
                        f"{here}.{name}: {minutes:g} min is shorter than the monitor's schedule interval "
                        f"({schedule_interval_s:g} s), so the window would hold at most one sample"
                    )


class Sample(BaseModel):
    at: datetime
    component: str
    metric: str
    value: float


class Breach(BaseModel):
    metric: str
    component: str
    value: float
    threshold: str
    limit: float
    baseline: float | None = None
    kind: str

    def describe(self) -> str:
        base = f", baseline {self.baseline:g}" if self.baseline is not None else ""
        return f"{self.component} {self.metric} = {self.value:g} breaches {self.threshold} (limit {self.limit:g}{base})"


def summarise(values: list[float], statistic: str) -> float:
    """A statistic of a non-empty list (percentiles by nearest rank)."""
    ordered = sorted(values)
    if statistic == "mean":
        return sum(ordered) / len(ordered)
    if statistic == "max":
        return ordered[-1]
    if statistic == "min":
        return ordered[0]
    q = {"p50": 0.50, "p95": 0.95, "p99": 0.99}[statistic]
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def evaluate(
    thresholds: list[Threshold], current: list[Sample], history: list[Sample], now: datetime
) -> list[Breach]:
    """Breaches in this run. ``current`` is this run's samples; ``history`` holds earlier runs'."""
    breaches: list[Breach] = []
    for t in thresholds:
        for sample in current:
            if sample.metric != t.metric or not fnmatch.fnmatchcase(sample.component, t.component):
                continue
            breach = _static(t, sample) if t.kind == "static" else _baseline(t, sample, history, now)
            if breach:
                breaches.append(breach)
    return breaches


def unmatched_components(thresholds: list[Threshold], samples: list[Sample]) -> list[str]:
    """Thresholds whose component glob names none of the components this run measured. A typo
    there (``lm-*`` for ``llm-*``) passes every check at save time, because components are only
    known once the monitor runs, and would leave the limit enforced nowhere."""
    components = sorted({s.component for s in samples})
    if not components:  # a run that measured nothing has nothing to match a glob against
        return []
    shown = ", ".join(components[:12]) + (f" and {len(components) - 12} more" if len(components) > 12 else "")
    return [
        f"thresholds[{i}] ({t.describe()}): component {t.component!r} matches none of this run's components ({shown})"
        for i, t in enumerate(thresholds)
        if not any(fnmatch.fnmatchcase(c, t.component) for c in components)
    ]


def _static(t: Threshold, sample: Sample) -> Breach | None:
    if t.above is not None and sample.value > t.above:
        limit = t.above
    elif t.below is not None and sample.value < t.below:
        limit = t.below
    else:
        return None
    return Breach(metric=t.metric, component=sample.component, value=sample.value, threshold=t.describe(),
                  limit=limit, kind="static")


def _baseline(t: Threshold, sample: Sample, history: list[Sample], now: datetime) -> Breach | None:
    recent_from = now - timedelta(minutes=t.window_minutes)
    baseline_from = recent_from - timedelta(minutes=t.baseline_window_minutes)
    mine = [h for h in history if h.component == sample.component and h.metric == t.metric]
    recent = [h.value for h in mine if h.at >= recent_from] + [sample.value]
    baseline = [h.value for h in mine if baseline_from <= h.at < recent_from]
    if len(baseline) < t.min_baseline_samples:
        return None
    base = summarise(baseline, t.statistic)
    value = summarise(recent, t.statistic)
    limit = (t.factor or 0) * base
    if value <= limit:
        return None
    return Breach(metric=t.metric, component=sample.component, value=round(value, 3), threshold=t.describe(),
                  limit=round(limit, 3), baseline=round(base, 3), kind="baseline")
