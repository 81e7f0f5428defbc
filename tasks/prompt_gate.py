"""Two decisions on a regression run, kept apart on purpose:

- the promotion gate (`gate`): a candidate moves to `production` only when it did not regress
  against the baseline, the thresholds hold, and an inconclusive candidate does not look worse;
  strict, since holding a candidate back costs little.
- the rollback decision (`rollback_decision`): the nightly moves `production` back only on
  evidence, a `regressed` verdict (statistically significant) or an absolute threshold breach;
  an inconclusive dip is sampling noise and must not flip production back and forth.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from tasks.prompt_report import VersionSummary
from tasks.prompt_statistics import PairedComparison, Verdict
from tasks.strict_input import StrictInput


class Thresholds(StrictInput):
    min_pass_rate: float = Field(default=0.8, ge=0, le=1, description="Suite pass rate the version needs.")
    max_p95_latency_ms: float = Field(default=30000, gt=0, description="p95 latency bound, milliseconds.")
    max_error_rate: float = Field(default=0.1, ge=0, le=1, description="Share of calls that may error.")
    max_pass_rate_drop: float = Field(
        default=0.0, ge=0, le=1,
        description="How far the candidate's pass rate may fall below the baseline's when the verdict is "
                    "inconclusive (0: an inconclusive candidate must be at least as good on average). "
                    "Promotion only: the nightly rollback ignores it.",
    )


class GateDecision(BaseModel):
    passed: bool
    reasons: list[str]


class RollbackDecision(BaseModel):
    production_failed: bool  # a regressed verdict or an absolute threshold breached
    rollback: bool  # production failed and the target holds the thresholds in this run
    target: int | None
    reasons: list[str]  # why production failed, or why it is kept
    blocked: str | None = None  # why production failed but is not rolled back


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


def rollback_decision(production: VersionSummary, target: VersionSummary | None,
                      comparison: PairedComparison | None, thresholds: Thresholds,
                      expectation_failures: Sequence[str] = ()) -> RollbackDecision:
    """Whether the nightly moves `production` back to ``target`` (the last known good version).

    Production failed only on a `regressed` verdict or an absolute threshold breach (including the
    Great Expectations restatement of the thresholds, ``expectation_failures``); an inconclusive
    dip, however it compares with the target, is not evidence. A target is only rolled back to
    when it holds the thresholds in the same run.
    """
    failures = []
    if comparison is not None and target is not None and comparison.verdict == Verdict.regressed:
        failures.append(f"verdict regressed against v{target.version} (p = {comparison.p_value:.4f})")
    failures += check_thresholds(production, thresholds)
    failures += [f"expectation failed: {f}" for f in expectation_failures]
    target_version = target.version if target is not None else None
    if not failures:
        verdict = (f"verdict {comparison.verdict.value} against v{target_version} (p = {comparison.p_value:.4f})"
                   if comparison is not None else "no rollback target to compare with")
        return RollbackDecision(production_failed=False, rollback=False, target=target_version,
                                reasons=[f"v{production.version} holds every threshold; {verdict}"])
    if target is None:
        return RollbackDecision(production_failed=True, rollback=False, target=None, reasons=failures,
                                blocked="no earlier production version passed its last recorded run")
    target_failures = check_thresholds(target, thresholds)
    if target_failures:
        return RollbackDecision(production_failed=True, rollback=False, target=target_version, reasons=failures,
                                blocked=f"rollback target v{target_version} fails the thresholds too: "
                                        + "; ".join(target_failures))
    return RollbackDecision(production_failed=True, rollback=True, target=target_version, reasons=failures)
