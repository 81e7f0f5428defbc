"""A copy the store refuses object after object stops, says why, and leaves the rest for the next run."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tasks.copy_breaker import CopyBreaker
from tasks.replication_copy import CopyOutcome, CopySettings, ObjectCopier, copy_objects
from tasks.replication_plan import ObjectInfo
from tasks.s3_location import S3Location


def outcome(status: str, code: str | None = None, key: str = "k") -> CopyOutcome:
    return CopyOutcome(key=key, size=1, status=status, code=code, operation="PutObject" if code else None,
                       error=f"{code}: Access Denied" if code else None)


def test_breaker_trips_on_refusals_in_a_row_and_names_the_cause() -> None:
    breaker = CopyBreaker(3)
    for i in range(2):
        breaker.record(outcome("failed", "AccessDenied", key=f"k{i}"))
    assert breaker.reason is None
    breaker.record(outcome("failed", "AccessDenied", key="k2"))
    assert breaker.reason is not None
    assert "3 objects in a row" in breaker.reason and "PutObject: AccessDenied" in breaker.reason and "k2" in breaker.reason
    breaker.record(outcome("copied"))
    assert breaker.reason is not None, "once tripped it stays tripped"


def test_a_copy_or_another_kind_of_failure_ends_the_streak() -> None:
    breaker = CopyBreaker(3)
    for ending in (outcome("copied"), outcome("failed", "SlowDown"), outcome("failed", None)):
        breaker.record(outcome("failed", "NoSuchBucket"))
        breaker.record(outcome("failed", "NoSuchBucket"))
        breaker.record(ending)
        assert breaker.in_a_row == 0 and breaker.reason is None
    breaker.record(outcome("failed", "AccessDenied"))
    breaker.record(outcome("vanished"))  # a source object deleted meanwhile says nothing either way
    assert breaker.in_a_row == 1


def test_threshold_zero_never_trips_and_negative_is_refused() -> None:
    breaker = CopyBreaker(0)
    for _ in range(1000):
        breaker.record(outcome("failed", "AccessDenied"))
    assert breaker.reason is None
    with pytest.raises(ValueError, match="abort_after_refusals"):
        CopyBreaker(-1)


def locations() -> tuple[S3Location, S3Location]:
    """Clients are built but never reach these endpoints: the copier's requests are replaced."""
    return (S3Location("src", "a", "", "http://127.0.0.1:9", "us-east-1", "k", "s"),
            S3Location("dst", "b", "", "http://127.0.0.1:9", "us-east-1", "k", "s"))


def objects(n: int) -> list[ObjectInfo]:
    return [ObjectInfo(key=f"o{i:04d}", size=100 + i, etag="0" * 32, last_modified=0.0) for i in range(n)]


def refuse(keys: set[str] | None = None):  # noqa: ANN201
    """copy_small that the destination refuses (for ``keys``, or every key) and copies otherwise."""
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def copy_small(self: ObjectCopier, obj: ObjectInfo) -> CopyOutcome:
        with lock:
            calls[obj.key] += 1
        if keys is None or obj.key in keys:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                               "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")
        return CopyOutcome(key=obj.key, size=obj.size, status="copied")
    return copy_small, calls


def test_a_batch_every_object_of_which_is_refused_stops_after_the_threshold(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    copy_small, calls = refuse()
    monkeypatch.setattr(ObjectCopier, "copy_small", copy_small)
    settings = CopySettings(concurrency=4, abort_after_refusals=5, resume_dir=tmp_path)
    result = copy_objects(*locations(), objects(200), settings)
    tried = sum(calls.values())
    # the refusal that trips it, plus what the other workers had already started
    assert 5 <= tried <= 5 + settings.concurrency - 1
    assert all(n == 1 for n in calls.values()), "a refusal is not retried"
    statuses = Counter(o.status for o in result.outcomes)
    assert statuses == {"failed": tried, "not_attempted": 200 - tried}
    assert result.aborted and "PutObject: AccessDenied" in result.aborted
    failed = [o for o in result.outcomes if o.status == "failed"]
    assert {o.code for o in failed} == {"AccessDenied"} and {o.operation for o in failed} == {"PutObject"}
    assert {o.error for o in result.outcomes if o.status == "not_attempted"} == {result.aborted}


def test_refusals_among_copies_and_a_zero_threshold_stop_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    every_other = {f"o{i:04d}" for i in range(0, 200, 2)}
    copy_small, calls = refuse(every_other)
    monkeypatch.setattr(ObjectCopier, "copy_small", copy_small)
    result = copy_objects(*locations(), objects(200), CopySettings(concurrency=1, abort_after_refusals=2, resume_dir=tmp_path))
    assert result.aborted is None and sum(calls.values()) == 200
    assert Counter(o.status for o in result.outcomes) == {"failed": 100, "copied": 100}

    copy_small, calls = refuse()
    monkeypatch.setattr(ObjectCopier, "copy_small", copy_small)
    result = copy_objects(*locations(), objects(50), CopySettings(concurrency=4, abort_after_refusals=0, resume_dir=tmp_path))
    assert result.aborted is None and sum(calls.values()) == 50
