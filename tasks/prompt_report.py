"""Summaries of a regression run: per case and per version pass rates with Wilson intervals,
flaky cases, latency percentiles, error rates, the paired verdict, and their renderings
(the side-by-side markdown and the results table)."""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel, Field

from tasks.prompt_runner import RunStats, SampleResult
from tasks.prompt_statistics import PairedComparison, compare_paired, is_flaky, percentile, wilson_interval


class CaseSummary(BaseModel):
    case_id: str
    samples: int
    scored: int
    passes: int
    errors: int
    pass_rate: float | None
    ci_low: float
    ci_high: float
    flaky: bool


class VersionSummary(BaseModel):
    version: int
    samples: int
    scored: int
    passes: int
    errors: int
    pass_rate: float | None
    ci_low: float
    ci_high: float
    error_rate: float
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    flaky_cases: list[str]
    cases: list[CaseSummary]


class RegressionReport(BaseModel):
    prompt: str
    suite: str
    confidence: float
    versions: list[VersionSummary]
    baseline: int | None = None
    candidate: int | None = None
    comparison: PairedComparison | None = None
    stats: RunStats = Field(default_factory=RunStats)
    gate: dict | None = None
    expectations: dict | None = None
    rollback: dict | None = None  # the nightly's RollbackDecision (watch mode only)
    action: str = "none"

    def version(self, number: int) -> VersionSummary:
        return next(v for v in self.versions if v.version == number)


def summarise(results: list[SampleResult], confidence: float = 0.95) -> list[VersionSummary]:
    by_version: dict[int, list[SampleResult]] = defaultdict(list)
    for r in results:
        by_version[r.version].append(r)
    summaries = []
    for version, rows in by_version.items():
        by_case: dict[str, list[SampleResult]] = defaultdict(list)
        for r in rows:
            by_case[r.case_id].append(r)
        cases = []
        for case_id, case_rows in by_case.items():
            scored = [r for r in case_rows if r.passed is not None]
            passes = sum(1 for r in scored if r.passed)
            lo, hi = wilson_interval(passes, len(scored), confidence)
            cases.append(CaseSummary(
                case_id=case_id, samples=len(case_rows), scored=len(scored), passes=passes,
                errors=len(case_rows) - len(scored), pass_rate=passes / len(scored) if scored else None,
                ci_low=lo, ci_high=hi, flaky=is_flaky(passes, len(scored)),
            ))
        scored_n = sum(c.scored for c in cases)
        passes_n = sum(c.passes for c in cases)
        lo, hi = wilson_interval(passes_n, scored_n, confidence)
        latencies = [r.latency_ms for r in rows if r.latency_ms is not None and r.error is None]
        summaries.append(VersionSummary(
            version=version, samples=len(rows), scored=scored_n, passes=passes_n, errors=len(rows) - scored_n,
            pass_rate=passes_n / scored_n if scored_n else None, ci_low=lo, ci_high=hi,
            error_rate=(len(rows) - scored_n) / len(rows) if rows else 0.0,
            p50_latency_ms=percentile(latencies, 50), p95_latency_ms=percentile(latencies, 95),
            flaky_cases=[c.case_id for c in cases if c.flaky], cases=cases,
        ))
    return summaries


def compare_versions(candidate: VersionSummary, baseline: VersionSummary, confidence: float) -> PairedComparison:
    """Paired comparison on the cases both versions scored (a case that only errored is left out)."""
    base = {c.case_id: c.pass_rate for c in baseline.cases}
    pairs = [(c.pass_rate, base[c.case_id]) for c in candidate.cases
             if c.pass_rate is not None and base.get(c.case_id) is not None]
    return compare_paired([p[0] for p in pairs], [p[1] for p in pairs], confidence)


def _rate(c: CaseSummary | VersionSummary) -> str:
    if c.pass_rate is None:
        return "n/a (all errors)"
    return f"{c.pass_rate:.0%} [{c.ci_low:.0%}, {c.ci_high:.0%}]"


def markdown(report: RegressionReport) -> str:
    """Side-by-side: cases x versions, pass rates with Wilson intervals, then the verdict."""
    versions = report.versions
    head = "| case | " + " | ".join(f"v{v.version}" + (" (baseline)" if v.version == report.baseline else "")
                                    + (" (candidate)" if v.version == report.candidate else "") for v in versions) + " |"
    lines = [f"# Prompt regression: `{report.prompt}` on suite `{report.suite}`", "",
             f"Pass rates with {report.confidence:.0%} Wilson intervals; `~` marks a flaky case.", "",
             head, "|---|" + "---|" * len(versions)]
    case_ids = [c.case_id for c in versions[0].cases] if versions else []
    for case_id in case_ids:
        cells = []
        for v in versions:
            c = next(x for x in v.cases if x.case_id == case_id)
            cells.append(_rate(c) + (" ~" if c.flaky else "") + (f" ({c.errors} errors)" if c.errors else ""))
        lines.append(f"| {case_id} | " + " | ".join(cells) + " |")
    lines.append("| **suite** | " + " | ".join(f"**{_rate(v)}**" for v in versions) + " |")
    lines.append("| error rate | " + " | ".join(f"{v.error_rate:.1%}" for v in versions) + " |")
    lines.append("| p50 / p95 latency | " + " | ".join(
        f"{v.p50_latency_ms or 0:.0f} / {v.p95_latency_ms or 0:.0f} ms" for v in versions) + " |")
    if report.comparison:
        cmp = report.comparison
        lines += ["", f"**Verdict: {cmp.verdict.value}** (v{report.candidate} vs v{report.baseline}, paired sign test "
                  f"over {cmp.cases} cases: {cmp.candidate_better} better, {cmp.candidate_worse} worse, {cmp.ties} tied; "
                  f"p = {cmp.p_value:.4f}, confidence {cmp.confidence:.0%})"]
    for v in versions:
        if v.flaky_cases:
            lines.append(f"\nFlaky in v{v.version}: {', '.join(v.flaky_cases)}")
    if report.gate:
        title = "Promotion gate (not applied by the nightly rollback)" if report.rollback else "Gate"
        lines += ["", f"**{title}: {'pass' if report.gate.get('passed') else 'fail'}**"]
        lines += [f"- {r}" for r in report.gate.get("reasons", [])]
    if report.rollback:
        r = report.rollback
        head = ("roll back" if r.get("rollback") else "production failed, no rollback" if r.get("production_failed")
                else "keep production")
        lines += ["", f"**Rollback decision: {head}**"] + [f"- {x}" for x in r.get("reasons", [])]
        if r.get("blocked"):
            lines.append(f"- no rollback: {r['blocked']}")
    if report.expectations:
        e = report.expectations
        lines += ["", f"**Great Expectations: {'success' if e.get('success') else 'failed'}** "
                  f"({e.get('evaluated', 0)} expectations, {e.get('failed', 0)} failed)"]
        lines += [f"- {x}" for x in e.get("failures", [])]
    s = report.stats
    lines += ["", f"Action: **{report.action}**. Calls {s.calls}, cache hits {s.cache_hits}, retries {s.retries}, "
              f"429s {s.throttled}, concurrency {s.min_concurrency}..{s.max_concurrency}."]
    return "\n".join(lines)


def table_rows(report: RegressionReport) -> list[dict]:
    rows = []
    for v in report.versions:
        for c in v.cases:
            rows.append({"version": v.version, "case": c.case_id, "samples": c.samples, "passes": c.passes,
                         "errors": c.errors, "pass_rate": None if c.pass_rate is None else round(c.pass_rate, 4),
                         "ci_low": round(c.ci_low, 4), "ci_high": round(c.ci_high, 4), "flaky": c.flaky})
    return rows
