"""The replication run's artifacts: a failures table the UI can show, that says when it is cut short."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import flows.replication as replication
from tasks.replication_report import DestinationReport, FailedObject, ReplicationReport


def report_with(failures: int) -> ReplicationReport:
    d = DestinationReport(source="region-a:s3://a", destination="region-b:s3://b", copied_objects=7)
    d.failed = [FailedObject(key=f"k{i:05d}", size=i, error="destination ETag differs") for i in range(failures)]
    return ReplicationReport(started_at=dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.timezone.utc), destinations=[d])


@pytest.fixture
def artifacts(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    made: dict[str, dict[str, Any]] = {}
    monkeypatch.setattr(replication, "create_table_artifact", lambda **kw: made.__setitem__(kw["key"], kw))
    return made


def test_a_run_without_failures_publishes_only_its_figures(artifacts: dict[str, dict[str, Any]]) -> None:
    replication.publish_report(report_with(0))
    assert list(artifacts) == [replication.REPORT_ARTIFACT_KEY]
    assert artifacts[replication.REPORT_ARTIFACT_KEY]["table"][0]["copied"] == 7


def test_every_failure_is_listed_with_its_error_when_they_fit(artifacts: dict[str, dict[str, Any]]) -> None:
    replication.publish_report(report_with(3))
    failures = artifacts[replication.FAILURES_ARTIFACT_KEY]
    assert [row["key"] for row in failures["table"]] == ["k00000", "k00001", "k00002"]
    assert all(row["error"] == "destination ETag differs" for row in failures["table"])
    assert failures["description"] == "Objects this run could not replicate"


def test_a_failures_table_cut_short_says_how_many_there_were(artifacts: dict[str, dict[str, Any]]) -> None:
    many = replication.FAILURES_ARTIFACT_ROWS + 500
    replication.publish_report(report_with(many))
    failures = artifacts[replication.FAILURES_ARTIFACT_KEY]
    assert len(failures["table"]) == replication.FAILURES_ARTIFACT_ROWS
    assert f"first {replication.FAILURES_ARTIFACT_ROWS:,} of the {many:,} objects" in failures["description"]
    assert f"failed {many}" in artifacts[replication.REPORT_ARTIFACT_KEY]["description"]
