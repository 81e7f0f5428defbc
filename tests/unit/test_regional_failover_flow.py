"""A failover or failback that stops half-way on any error (not only the project's own) is
reported `aborted` with its steps so far, then re-raised."""

from __future__ import annotations

from typing import Any

import pytest
import redis

import flows.regional_failover as module
from tasks.regional_failover import StepLog


class HalfWay:
    def __init__(self, settings: object) -> None:
        pass

    def fail_over(self, verify_requests: int, log: StepLog) -> None:
        log.add("gateway", "region-a in maintenance")
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6392")

    def fail_back(self, policy: object, log: StepLog) -> None:
        log.add("sessions", "region-a following region-b")
        raise redis.TimeoutError("Timeout reading from socket")


@pytest.mark.parametrize("flow, kind, error", [
    (module.regional_failover, "regional-failover", redis.ConnectionError),
    (module.failback, "failback", redis.TimeoutError),
])
def test_a_raw_error_half_way_is_reported_aborted(monkeypatch: pytest.MonkeyPatch, flow: Any, kind: str,
                                                   error: type[Exception]) -> None:
    published: list[tuple[str, str, str | None, int]] = []
    monkeypatch.setattr(module, "RegionalControl", HalfWay)
    monkeypatch.setattr(module, "current_platform", lambda: object())
    monkeypatch.setattr(module, "_publish", lambda k, log, outcome, reason=None:
                        published.append((k, outcome, reason, len(log.entries))))
    with pytest.raises(error):
        flow.fn()
    assert len(published) == 1
    k, outcome, reason, steps = published[0]
    assert (k, outcome, steps) == (kind, "aborted", 1)
    assert reason is not None and reason.startswith(error.__name__)


def test_a_failover_checked_by_no_probe_is_refused() -> None:
    from flows.regional_failover import regional_failover
    from tasks.errors import ConfigurationError
    from tasks.regional_failover import RegionalControl

    with pytest.raises(Exception, match="verify_requests"):
        regional_failover.validate_parameters({"verify_requests": 0})
    control = RegionalControl.__new__(RegionalControl)  # the check comes before any gateway or Redis is touched
    with pytest.raises(ConfigurationError, match="verify_requests: -3"):
        control.fail_over(verify_requests=-3)
