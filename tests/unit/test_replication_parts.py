"""Adaptive concurrency, resume records, lag figures, location checks: no server."""

import threading
import time
from pathlib import Path

import pytest

from flows.replication import ReplicationParams
from tasks.adaptive_concurrency import AdaptiveLimiter, WireStats
from tasks.errors import ConfigurationError
from tasks.multipart_resume import ResumeRecord, ResumeStore
from tasks.replication_report import LagFigures
from tasks.s3_location import S3Location, check_distinct, check_quarantine


def test_limiter_halves_under_throttling_and_recovers() -> None:
    limiter = AdaptiveLimiter(16, cooldown_s=0.0)
    limiter.on_throttle()
    limiter.on_throttle()
    assert limiter.limit == 4 and limiter.lowest == 4
    for _ in range(200):
        limiter.on_success()
    assert limiter.limit == 16


def test_limiter_bounds_holders() -> None:
    limiter = AdaptiveLimiter(3)
    peak = 0
    current = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal peak, current
        with limiter:
            with lock:
                current += 1
                peak = max(peak, current)
            time.sleep(0.01)
            with lock:
                current -= 1

    threads = [threading.Thread(target=work) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 3


class _Http:
    def __init__(self, status: int) -> None:
        self.status_code = status


def test_wire_stats_count_throttles_and_resets_and_cut_concurrency() -> None:
    limiter = AdaptiveLimiter(8, cooldown_s=0.0)
    stats = WireStats(limiter=limiter)
    assert stats.observe(response=(_Http(503), {"Error": {"Code": "SlowDown"}})) is None
    stats.observe(response=(_Http(500), {"Error": {"Code": "InternalError"}}))
    stats.observe(caught_exception=ConnectionResetError())
    stats.observe(response=(_Http(200), {}))
    assert (stats.retries, stats.throttles, stats.server_errors, stats.connection_errors) == (3, 1, 1, 1)
    assert limiter.limit == 1


def test_resume_store_round_trip(tmp_path: Path) -> None:
    store = ResumeStore(tmp_path / "uploads")
    record = ResumeRecord("ep|bucket", "big/key", "upload-1", "etag", 30, 10, {1: "a" * 32})
    store.save(record)
    loaded = store.load("ep|bucket", "big/key")
    assert loaded == record
    assert store.load("ep|other", "big/key") is None
    store.delete("ep|bucket", "big/key")
    assert store.load("ep|bucket", "big/key") is None


def test_lag_percentiles() -> None:
    lag = LagFigures.of([float(i) for i in range(1, 101)])
    assert (lag.p50_s, lag.p99_s, lag.max_s, lag.count) == (50.0, 99.0, 100.0, 100)
    assert LagFigures.of([]).p50_s is None


def loc(label: str, bucket: str, prefix: str = "", endpoint: str = "http://127.0.0.1:1") -> S3Location:
    return S3Location(label, bucket, prefix, endpoint)


def test_same_place_and_overlapping_prefixes_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="same place"):
        check_distinct(loc("a", "b1"), [loc("c", "b1")])
    with pytest.raises(ConfigurationError, match="overlapping"):
        check_distinct(loc("a", "b1", "data/"), [loc("c", "b1", "data/sub/")])
    check_distinct(loc("a", "b1", "data/"), [loc("c", "b1", "other/"), loc("d", "b1", endpoint="http://127.0.0.1:2")])


def test_data_inside_the_quarantine_prefix_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="quarantine_prefix 'models' holds storage-target/c's objects"):
        check_quarantine([loc("a", "b1", "data/"), loc("c", "b2", "models/llama/")], "models")
    check_quarantine([loc("a", "b1", ""), loc("c", "b2", "modelsx/")], "models")  # the bucket root holds it: skipped, fine
    check_quarantine([loc("a", "b1", "models/")], None)
    with pytest.raises(ValueError, match="quarantine_prefix '../q'"):
        ReplicationParams(quarantine_prefix="../q")


def test_params_refuse_the_source_as_destination_and_climbing_prefixes() -> None:
    with pytest.raises(ValueError, match="also the source"):
        ReplicationParams(source="region-a", destinations=["region-a"])
    with pytest.raises(ValueError, match="not allowed"):
        ReplicationParams(prefix="../etc")
    assert ReplicationParams(prefix="/a/b/").prefix == "a/b"
