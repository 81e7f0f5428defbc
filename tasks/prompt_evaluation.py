"""One regression evaluation in plain Python: run the suite on the versions, summarise, compare
candidate with baseline, apply the gate, and check the results with Great Expectations.

Flows call this through thin tasks; tests call it directly.
"""

from __future__ import annotations

import asyncio

from tasks.prompt_expectations import validate_results
from tasks.prompt_gate import RollbackDecision, Thresholds, check_thresholds, gate, rollback_decision
from tasks.prompt_registry import PromptVersion
from tasks.prompt_report import RegressionReport, compare_versions, summarise
from tasks.prompt_runner import PromptRunner, SampleResult
from tasks.prompt_suite import Suite


def evaluate(
    suite: Suite, runner: PromptRunner, *, candidate: PromptVersion, baseline: PromptVersion | None,
    thresholds: Thresholds, confidence: float = 0.95, expectations: bool = True,
) -> tuple[RegressionReport, list[SampleResult]]:
    versions = [candidate] + ([baseline] if baseline and baseline.version != candidate.version else [])
    results = asyncio.run(runner.run(suite, versions))
    summaries = summarise(results, confidence)
    report = RegressionReport(prompt=candidate.name, suite=suite.name, confidence=confidence,
                              versions=sorted(summaries, key=lambda v: v.version), candidate=candidate.version,
                              stats=runner.stats)
    cand = report.version(candidate.version)
    base = None
    if baseline is not None and baseline.version != candidate.version:
        report.baseline = baseline.version
        base = report.version(baseline.version)
        report.comparison = compare_versions(cand, base, confidence)
    report.gate = gate(cand, base, report.comparison, thresholds).model_dump()
    if expectations:
        report.expectations = validate_results(results, candidate.version, thresholds)
    return report, results


def baseline_holds(report: RegressionReport, thresholds: Thresholds) -> bool:
    """The baseline (rollback target) itself meets the thresholds in this run."""
    return report.baseline is not None and not check_thresholds(report.version(report.baseline), thresholds)


def decide_rollback(report: RegressionReport, thresholds: Thresholds) -> RollbackDecision:
    """The nightly's decision for a report whose candidate is `production` and whose baseline is
    the rollback target (not the promotion gate: see tasks.prompt_gate)."""
    assert report.candidate is not None
    target = report.version(report.baseline) if report.baseline is not None else None
    failures = (report.expectations or {}).get("failures", [])
    return rollback_decision(report.version(report.candidate), target, report.comparison, thresholds, failures)
