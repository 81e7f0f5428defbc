"""Promotion gate vs nightly rollback decision: promotion is strict (an inconclusive candidate may
not look worse), rollback needs evidence (a regressed verdict or an absolute threshold breach)."""

from tasks.prompt_evaluation import decide_rollback
from tasks.prompt_gate import Thresholds, gate, rollback_decision
from tasks.prompt_report import RegressionReport, VersionSummary, compare_versions, summarise
from tasks.prompt_runner import SampleResult
from tasks.prompt_statistics import Verdict

PRODUCTION, TARGET = 2, 1


def _summaries(production_outcome) -> tuple[VersionSummary, VersionSummary]:
    """10 cases x 3 samples; the target passes everything, production as ``production_outcome(case, sample)``
    says (True / False / None for an errored call)."""
    rows = []
    for version in (PRODUCTION, TARGET):
        for c in range(10):
            for s in range(3):
                outcome = production_outcome(c, s) if version == PRODUCTION else True
                rows.append(SampleResult(version=version, case_id=f"c{c}", sample=s, output="x", latency_ms=100,
                                         passed=outcome, error="HTTP 503" if outcome is None else None))
    by_version = {v.version: v for v in summarise(rows)}
    return by_version[PRODUCTION], by_version[TARGET]


def _decide(production_outcome, thresholds=None, with_target=True):
    production, target = _summaries(production_outcome)
    comparison = compare_versions(production, target, 0.95) if with_target else None
    thresholds = thresholds or Thresholds()
    return (gate(production, target if with_target else None, comparison, thresholds),
            rollback_decision(production, target if with_target else None, comparison, thresholds), comparison)


def test_inconclusive_small_dip_holds_a_promotion_but_does_not_roll_back():
    promotion, rollback, comparison = _decide(lambda c, s: not (c == 0 and s == 0))  # misses 1 of 30 samples
    assert comparison.verdict == Verdict.inconclusive
    assert not promotion.passed and "inconclusive" in promotion.reasons[0]  # promotion stays strict
    assert not rollback.production_failed and not rollback.rollback and rollback.target == TARGET
    assert "verdict inconclusive" in rollback.reasons[0]


def test_significant_regression_rolls_back():
    # 6 of 10 cases fail everywhere: p = 0.031 < 0.05; pass-rate threshold low enough to hold
    _, rollback, comparison = _decide(lambda c, s: c >= 6, Thresholds(min_pass_rate=0.3))
    assert comparison.verdict == Verdict.regressed
    assert rollback.production_failed and rollback.rollback and rollback.target == TARGET
    assert rollback.reasons == [f"verdict regressed against v{TARGET} (p = {comparison.p_value:.4f})"]


def test_threshold_breach_rolls_back_without_a_regressed_verdict():
    # errors on 2 of 10 cases: error rate 20% > 10%; the scored samples all pass, so no regression
    _, rollback, comparison = _decide(lambda c, s: None if c < 2 else True)
    assert comparison.verdict == Verdict.inconclusive
    assert rollback.rollback and any("error rate 20.0% > 10.0%" in r for r in rollback.reasons)
    # pass rate below the minimum with an inconclusive verdict (2 worse cases: p = 0.5)
    _, rollback, comparison = _decide(lambda c, s: c >= 2, Thresholds(min_pass_rate=0.9))
    assert comparison.verdict == Verdict.inconclusive
    assert rollback.rollback and any("pass rate 80.0% < 90.0%" in r for r in rollback.reasons)


def test_no_rollback_without_a_target_or_when_the_target_fails_too():
    _, alone, _ = _decide(lambda c, s: None if c < 2 else True, with_target=False)
    assert alone.production_failed and not alone.rollback and alone.target is None
    assert alone.blocked == "no earlier production version passed its last recorded run"
    production, target = _summaries(lambda c, s: None if c < 2 else True)
    broken_target = target.model_copy(update={"error_rate": 0.5})
    both = rollback_decision(production, broken_target, compare_versions(production, target, 0.95), Thresholds())
    assert both.production_failed and not both.rollback
    assert both.blocked.startswith(f"rollback target v{TARGET} fails the thresholds too: v{TARGET} error rate 50.0%")


def test_report_decision_counts_failed_expectations_as_a_breach():
    production, target = _summaries(lambda c, s: True)
    report = RegressionReport(prompt="p", suite="s", confidence=0.95, versions=[target, production],
                              candidate=PRODUCTION, baseline=TARGET, comparison=compare_versions(production, target, 0.95))
    assert not decide_rollback(report, Thresholds()).production_failed
    report.expectations = {"success": False, "failures": ["expect_column_values_to_be_null error"]}
    decision = decide_rollback(report, Thresholds())
    assert decision.rollback and decision.reasons == ["expectation failed: expect_column_values_to_be_null error"]
