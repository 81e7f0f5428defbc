"""The promotion gate: a candidate moves to `production` only when it did not regress against
the baseline and the thresholds hold."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tasks.prompt_report import VersionSummary
from tasks.prompt_statistics import PairedComparison, Verdict


class Thresholds(BaseModel):
    min_pass_rate: float = Field(default=0.8, ge=0, le=1, description="Suite pass rate the version needs.")
    max_p95_latency_ms: float = Field(default=30000, gt=0, description="p95 latency bound, milliseconds.")
    max_error_rate: float = Field(default=0.1, ge=0, le=1, description="Share of calls that may error.")
    max_pass_rate_drop: float = Field(
        default=0.0, ge=0, le=1,
        description="How far the candidate's pass rate may fall below the baseline's when the verdict is "
                    "inconclusive (0: an inconclusive candidate must be at least as good on average).",
    )


class GateDecision(BaseModel):
    passed: bool
    reasons: list[str]


def check_thresholds(summary: VersionSummary, thresholds: Thresholds) -> list[str]:
    """Reasons the version fails the thresholds (empty: it holds them)."""
    reasons = []
    if summary.pass_rate is None or summary.pass_rate < thresholds.min_pass_rate:
        shown = "n/a (every call errored)" if summary.pass_rate is None else f"{summary.pass_rate:.1%}"
        reasons.append(f"v{summary.version} pass rate {shown} < {thresholds.min_pass_rate:.1%}")
    if summary.p95_latency_ms is not None and summary.p95_latency_ms > thresholds.max_p95_latency_ms:
        reasons.append(f"v{summary.version} p95 latency {summary.p95_latency_ms:.0f} ms > "
                       f"{thresholds.max_p95_latency_ms:.0f} ms")
    if summary.error_rate > thresholds.max_error_rate:
        reasons.append(f"v{summary.version} error rate {summary.error_rate:.1%} > {thresholds.max_error_rate:.1%}")
    return reasons


def gate(candidate: VersionSummary, baseline: VersionSummary | None, comparison: PairedComparison | None,
         thresholds: Thresholds) -> GateDecision:
    reasons = check_thresholds(candidate, thresholds)
    if comparison is not None and baseline is not None:
        if comparison.verdict == Verdict.regressed:
            reasons.append(f"verdict regressed (p = {comparison.p_value:.4f})")
        elif comparison.verdict == Verdict.inconclusive:
            drop = (baseline.pass_rate or 0) - (candidate.pass_rate or 0)
            if drop > thresholds.max_pass_rate_drop:
                reasons.append(f"verdict inconclusive and pass rate {drop:.1%} below the baseline "
                               f"(allowed {thresholds.max_pass_rate_drop:.1%})")
    ok = not reasons
    return GateDecision(passed=ok, reasons=reasons or ["verdict not regressed and every threshold holds"])
