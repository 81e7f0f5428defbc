"""The SQLite time-series store: record, read back by window, retention, hourly trend."""

from datetime import datetime, timedelta, timezone

from tasks.metrics_store import MetricsStore, hourly_trend
from tasks.thresholds import Breach, Sample

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def test_record_since_and_retention(tmp_path) -> None:
    store = MetricsStore(tmp_path / "m.sqlite", retention=timedelta(days=1))
    old = [Sample(at=NOW - timedelta(days=2), component="gateway", metric="latency_ms", value=5)]
    store.record("run-0", old, at=NOW - timedelta(days=2))
    fresh = [Sample(at=NOW, component="gateway", metric="latency_ms", value=7),
             Sample(at=NOW, component="gateway", metric="status", value=0)]
    breach = Breach(metric="latency_ms", component="gateway", value=7, threshold="latency_ms > 6", limit=6, kind="static")
    assert store.record("run-1", fresh, [breach], at=NOW) == 2
    got = store.since(NOW - timedelta(days=3))
    assert [(s.metric, s.value) for s in got] == [("latency_ms", 7), ("status", 0)]  # the 2-day-old row was dropped
    assert [s.value for s in store.since(NOW - timedelta(hours=1), metric="latency_ms", component="gateway")] == [7]
    assert store.breach_counts() == {("gateway", "latency_ms"): 1}
    assert store.run_count() == 1


def test_hourly_trend_buckets_oldest_first_with_gaps() -> None:
    samples = [Sample(at=NOW - timedelta(minutes=m), component="c", metric="latency_ms", value=v)
               for m, v in [(30, 10), (40, 20), (23 * 60 + 30, 99), (25 * 60, 1000)]]
    trend = hourly_trend(samples, NOW, hours=24)
    assert len(trend) == 24 and trend[-1] == 15 and trend[0] == 99
    assert trend[1:-1] == [None] * 22
