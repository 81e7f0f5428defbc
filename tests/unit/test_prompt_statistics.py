"""Statistics against known values (Wilson intervals from published tables, exact sign tests)."""

import pytest

from tasks.prompt_statistics import Verdict, compare_paired, is_flaky, percentile, sign_test_p_value, wilson_interval


@pytest.mark.parametrize(
    ("passes", "n", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),   # Newcombe (1998) / statsmodels proportion_confint(method="wilson")
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
        (1, 20, 0.0089, 0.2361),
    ],
)
def test_wilson_interval_known_values(passes, n, low, high):
    lo, hi = wilson_interval(passes, n, 0.95)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_narrows_with_more_samples_and_no_trials_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    w10 = wilson_interval(5, 10)
    w1000 = wilson_interval(500, 1000)
    assert (w1000[1] - w1000[0]) < (w10[1] - w10[0])
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_sign_test_exact_values():
    assert sign_test_p_value(0, 0) == 1.0
    assert sign_test_p_value(6, 0) == pytest.approx(2 * 0.5**6)  # 0.03125
    assert sign_test_p_value(0, 5) == pytest.approx(0.0625)
    assert sign_test_p_value(8, 2) == pytest.approx(0.109375)
    assert sign_test_p_value(3, 3) == pytest.approx(1.0)


def test_paired_verdicts():
    base = [1.0] * 8
    regressed = compare_paired([0.0] * 6 + [1.0] * 2, base)
    assert regressed.verdict == Verdict.regressed
    assert (regressed.candidate_worse, regressed.candidate_better, regressed.ties) == (6, 0, 2)
    improved = compare_paired(base, [0.0] * 6 + [1.0] * 2)
    assert improved.verdict == Verdict.improved
    few = compare_paired([0.0, 0.0] + [1.0] * 6, base)  # 2 worse cases: p = 0.5
    assert few.verdict == Verdict.inconclusive
    assert few.p_value == pytest.approx(0.5)
    same = compare_paired(base, base)
    assert same.verdict == Verdict.inconclusive and same.p_value == 1.0
    # a stricter confidence turns the 6/0 regression (p=0.031) inconclusive
    assert compare_paired([0.0] * 6, [1.0] * 6, confidence=0.99).verdict == Verdict.inconclusive


def test_percentile_and_flaky():
    assert percentile([], 95) is None
    assert percentile([10.0], 95) == 10.0
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50) == pytest.approx(5.5)
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert is_flaky(1, 3) and not is_flaky(0, 3) and not is_flaky(3, 3)
