"""Drill figures from raw records: detection, failover, recovery, percentiles, SLOs, aborts."""

from __future__ import annotations

import pytest

from tasks.drill_experiment import AbortCondition, Probe, Slo
from tasks.drill_load import TurnRecord
from tasks.drill_measurements import (
    GatewayObservation, Marks, abort_breaches, check_steady_state, evaluate_slos, measure, percentile,
)

T0 = 1_000.0
MARKS = Marks(load_started=T0 - 10, fault_injected=T0, rollback_done=T0 + 10, ended=T0 + 20)


def rec(sent: float, ms: float, status: int | None = 200, backend: str | None = "region-a") -> TurnRecord:
    return TurnRecord(user=0, turn=0, sent_at=sent, latency_ms=ms, status=status, backend=backend)


RECORDS = [
    rec(T0 - 5, 100), rec(T0 - 1, 120),
    rec(T0 + 0.1, 900, backend="region-b"),       # retried on region-b: done at T0 + 1.0
    rec(T0 + 0.3, 50, status=503, backend=None),  # one the gateway could not save
    rec(T0 + 2, 110, backend="region-b"),
    rec(T0 + 10.5, 300, backend="region-a"),      # back on the primary: done at T0 + 10.8
    rec(T0 + 12, 100),
]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 99) is None
    assert percentile([5.0], 50) == 5.0
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([1, 2, 3, 4], 50) == 2


def test_times_come_from_the_records_and_the_gateway() -> None:
    obs = [GatewayObservation(T0 - 9, "region-a", True), GatewayObservation(T0 + 0.4, "region-a", False)]
    m = measure(RECORDS, MARKS, obs, primary="region-a", secondary="region-b", lost_turns=2, acknowledged=6)
    assert m.detect_ms == pytest.approx(400) and m.detect_source == "gateway runtime API"
    assert m.failover_ms == pytest.approx(1000)
    assert m.recover_ms == pytest.approx(800)
    assert (m.requests, m.failed) == (7, 1)
    assert m.failed_per_1000 == pytest.approx(142.86)
    assert m.phases["before"].requests == 2 and m.phases["during"].failed == 1
    assert m.phases["during"].p99_ms == 900 and m.phases["after"].p50_ms == 100


def test_a_standby_trickle_before_the_primary_stops_is_not_a_failover() -> None:
    records = [rec(T0 + 0.1, 100, backend="region-b"),   # the standby's normal share
               rec(T0 + 0.5, 100, backend="region-a"),   # the primary still answers
               rec(T0 + 2.0, 500, backend="region-b")]   # now it has failed over
    m = measure(records, MARKS, [], primary="region-a", secondary="region-b")
    assert m.failover_ms == pytest.approx(2500)


def test_without_a_runtime_api_detection_is_the_first_secondary_answer() -> None:
    m = measure(RECORDS, MARKS, [], primary="region-a", secondary="region-b")
    assert m.detect_ms == m.failover_ms == pytest.approx(1000)
    assert "no runtime API" in m.detect_source


def test_no_failover_is_a_breach_named_never_observed() -> None:
    only_failures = [rec(T0 - 1, 100), rec(T0 + 1, 2000, status=504, backend=None)]
    m = measure(only_failures, MARKS, [], primary="region-a", secondary="region-b", lost_turns=0)
    verdicts = {v.name: v for v in evaluate_slos(m, Slo(max_failover_ms=1000, max_failed_per_1000=1, max_lost_turns=0))}
    assert not verdicts["max_failover_ms"].passed and verdicts["max_failover_ms"].detail == "never observed"
    assert not verdicts["max_failed_per_1000"].passed and verdicts["max_failed_per_1000"].measured == 500
    assert verdicts["max_lost_turns"].passed


def test_slos_not_set_are_not_judged() -> None:
    m = measure(RECORDS, MARKS, [], primary="region-a", secondary="region-b")
    assert evaluate_slos(m, Slo()) == []


def test_steady_state_probes() -> None:
    window = [rec(T0, 100), rec(T0, 200), rec(T0, 50, status=500, backend=None)]
    probes = [Probe(kind="success_rate", tolerance=0.6), Probe(kind="p99_latency_ms", tolerance=150),
              Probe(kind="gateway_completion", tolerance=2), Probe(kind="session_continuity", tolerance=0)]
    verdicts = {v.name: v for v in check_steady_state(window, probes, missing_turns=1)}
    assert verdicts["success_rate"].passed and verdicts["success_rate"].measured == pytest.approx(0.667, abs=1e-3)
    assert not verdicts["p99_latency_ms"].passed
    assert verdicts["gateway_completion"].passed
    assert not verdicts["session_continuity"].passed
    assert not any(v.passed for v in check_steady_state([], probes[:1]))


def test_abort_conditions_look_at_their_trailing_window() -> None:
    records = [rec(T0, 10, status=503, backend=None), rec(T0, 10, status=503, backend=None), rec(T0 - 20, 10)]
    cond = [AbortCondition(signal="error_rate", threshold=0.5, window_s=5)]
    assert abort_breaches(records, cond, now=T0 + 1) == ["error_rate 1 > 0.5 over the last 5 s"]
    assert abort_breaches(records, cond, now=T0 + 30) == []
    slow = [AbortCondition(signal="p99_latency_ms", threshold=50, window_s=5)]
    assert abort_breaches([rec(T0, 80)], slow, now=T0 + 1)
