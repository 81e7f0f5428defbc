"""Static and baseline thresholds, and the bad configuration they refuse."""

from datetime import datetime, timedelta, timezone

import pytest

from blocks.monitoring_policy import MonitoringPolicy
from tasks.errors import ConfigurationError
from tasks.thresholds import Sample, Threshold, check_thresholds, evaluate, summarise, unmatched_components

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def _s(component: str, metric: str, value: float, minutes_ago: float = 0) -> Sample:
    return Sample(at=NOW - timedelta(minutes=minutes_ago), component=component, metric=metric, value=value)


def test_unknown_metric_is_named_with_its_position() -> None:
    with pytest.raises(ConfigurationError, match=r"thresholds\[1\]\.metric: unknown metric 'latncy_ms'"):
        check_thresholds([Threshold(metric="status", above=1), Threshold(metric="latncy_ms", above=5)], 300, "policy")


def test_baseline_window_shorter_than_the_schedule_is_refused() -> None:
    t = Threshold(metric="latency_ms", kind="baseline", factor=3, window_minutes=15, baseline_window_minutes=2)
    with pytest.raises(ConfigurationError, match=r"baseline_window_minutes: 2 min is shorter than .*300 s"):
        check_thresholds([t], 300, "policy")


def test_policy_block_refuses_bad_thresholds_when_built() -> None:
    with pytest.raises(ConfigurationError, match="unknown metric 'cpu'"):
        MonitoringPolicy(state_dir="/tmp/x", thresholds=[Threshold(metric="cpu", above=90)])
    with pytest.raises(ConfigurationError, match="needs `factor`"):
        MonitoringPolicy(state_dir="/tmp/x", thresholds=[Threshold(metric="latency_ms", kind="baseline")])


def test_static_threshold_breaches_only_matching_components() -> None:
    t = Threshold(metric="memory_rss_bytes", component="llm-*", above=100)
    current = [_s("llm-region-a", "memory_rss_bytes", 150), _s("sessions-region-a", "memory_rss_bytes", 500),
               _s("llm-region-b", "memory_rss_bytes", 90)]
    breaches = evaluate([t], current, [], NOW)
    assert [(b.component, b.value, b.limit, b.kind) for b in breaches] == [("llm-region-a", 150, 100, "static")]


def test_baseline_threshold_needs_enough_history_then_compares_p95() -> None:
    t = Threshold(metric="latency_ms", kind="baseline", factor=3, window_minutes=15, baseline_window_minutes=60,
                  min_baseline_samples=5)
    history = [_s("gateway", "latency_ms", 100 + i, minutes_ago=20 + i) for i in range(4)]
    slow = [_s("gateway", "latency_ms", 1000)]
    assert evaluate([t], slow, history, NOW) == []  # 4 baseline samples < 5: judge nothing
    history.append(_s("gateway", "latency_ms", 104, minutes_ago=30))
    (breach,) = evaluate([t], slow, history, NOW)
    assert breach.baseline == 104 and breach.limit == 312 and breach.value == 1000 and breach.kind == "baseline"
    assert evaluate([t], [_s("gateway", "latency_ms", 300)], history, NOW) == []
    # samples older than the baseline window do not count
    old = [_s("gateway", "latency_ms", 1, minutes_ago=200) for _ in range(10)]
    assert evaluate([t], [_s("gateway", "latency_ms", 300)], old + history, NOW) == []


def test_summarise_statistics() -> None:
    values = list(range(1, 101))
    assert summarise(values, "p95") == 95 and summarise(values, "p50") == 50
    assert summarise(values, "mean") == 50.5 and summarise(values, "max") == 100


def test_a_schedule_edited_away_from_the_policy_is_named_and_its_windows_checked_again() -> None:
    from tasks.monitoring import policy_interval_drift

    policy = MonitoringPolicy(state_dir="/tmp/x", thresholds=[
        Threshold(metric="latency_ms", kind="baseline", factor=3, window_minutes=15, baseline_window_minutes=60)])
    assert policy_interval_drift(policy, "platform", timedelta(seconds=300)) is None
    slower = policy_interval_drift(policy, "platform", timedelta(minutes=10))
    assert slower == "monitoring-policy/platform: schedule_interval_s is 300 s but this deployment runs every 600 s; set it to 600"
    too_slow = policy_interval_drift(policy, "platform", timedelta(minutes=20))
    assert too_slow is not None and too_slow.startswith("monitoring-policy/platform: schedule_interval_s is 300 s")
    assert "thresholds[0].window_minutes: 15 min is shorter than the monitor's schedule interval (1200 s)" in too_slow


def test_an_error_rate_limit_given_in_percent_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"thresholds\[0\]\.above: 50: error_rate is a fraction"):
        check_thresholds([Threshold(metric="error_rate", above=50)], 300, "policy")
    check_thresholds([Threshold(metric="error_rate", above=0.5), Threshold(metric="latency_ms", above=500)], 300, "policy")


def test_a_component_glob_that_matches_nothing_this_run_is_named() -> None:
    samples = [_s("llm-region-a", "memory_rss_bytes", 5), _s("sessions-region-a", "status", 0)]
    typo = Threshold(metric="memory_rss_bytes", component="lm-*", above=4)
    notes = unmatched_components([Threshold(metric="status", above=1.5), typo,
                                  Threshold(metric="replication_lag_bytes", component="sessions-*", above=1)], samples)
    assert notes == ["thresholds[1] (memory_rss_bytes > 4): component 'lm-*' matches none of this run's components "
                     "(llm-region-a, sessions-region-a)"]
    # the typo really leaves the limit enforced nowhere: the same sample breaches the corrected glob only
    assert evaluate([typo], samples, [], NOW) == []
    assert len(evaluate([typo.model_copy(update={"component": "llm-*"})], samples, [], NOW)) == 1


def test_a_long_component_list_is_cut_in_the_note() -> None:
    samples = [_s(f"c{i:02}", "status", 0) for i in range(15)]
    (note,) = unmatched_components([Threshold(metric="status", component="gateway", above=1)], samples)
    assert note.endswith("(c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, c10, c11 and 3 more)")
    assert unmatched_components([Threshold(metric="status", component="gateway", above=1)], []) == []
