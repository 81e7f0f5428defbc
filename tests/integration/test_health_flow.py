"""The health flow against the real platform: all ok, a killed model server down, back after restart."""

import os
import signal
import time

import psutil
import pytest

from deployments.settings import PlatformSettings
from deployments.stack.launcher import Launcher
from flows.health import REPORT_ARTIFACT_KEY, HealthTargets, health_check
from tasks.health_probes import HealthStatus, ProbePolicy
from tests.server_events import wait_for_events

# These tests check what the probes find, not how fast the machine is: a latency threshold no
# run can reach keeps "slow" (degraded) out of them, so no assertion here is a wall-clock limit.
NO_LATENCY_LIMIT = HealthTargets(policy=ProbePolicy(degraded_latency_ms=3_600_000, timeout_s=120))

pytestmark = pytest.mark.integration


def test_health_is_ok_everywhere_and_reported(platform: PlatformSettings) -> None:
    started = time.time()
    report = health_check(NO_LATENCY_LIMIT)
    bad = [(r.component, r.status.value, r.detail) for r in report.results if r.status is not HealthStatus.ok]
    assert not bad
    assert {r.component for r in report.results} == {
        "storage-region-a", "storage-region-b", "llm-region-a", "llm-region-b", "gateway",
        "sessions-region-a", "sessions-region-b", "prefect-api", "notifications",
    }
    assert report.component("gateway").metrics["served_by"] == "region-a"
    assert report.component("sessions-region-b").metrics["role"] == "replica"

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=50)
    table = next(a for a in artifact if a.key == REPORT_ARTIFACT_KEY)
    assert "llm-region-a" in str(table.data)
    events = wait_for_events(platform, event="llm-resilience.health.ok", resource_id="llm-resilience.component.llm-region-a", since=started)
    assert events and events[0]["payload"]["latency_ms"] > 0


def test_killed_model_server_is_down_then_ok_after_restart(platform: PlatformSettings) -> None:
    launcher = Launcher(platform)
    record = launcher.record("llm-region-a")
    started = time.time()
    os.kill(record.pid, signal.SIGKILL)
    psutil.Process(record.pid).wait(10)
    try:
        report = health_check(NO_LATENCY_LIMIT)
        down = report.component("llm-region-a")
        assert down.status is HealthStatus.down, down
        assert down.attempts == 2 and down.latency_ms is None
        # the gateway fails over: its completion is served by region-b
        gateway = report.component("gateway")
        assert gateway.status is not HealthStatus.down and gateway.metrics["served_by"] == "region-b"
        assert report.component("llm-region-b").status is HealthStatus.ok
        assert report.status is HealthStatus.down
        events = wait_for_events(platform, event="llm-resilience.health.down", resource_id="llm-resilience.component.llm-region-a", since=started)
        assert events and events[0]["payload"]["status"] == "down"
    finally:
        assert launcher.up() == ["llm-region-a"]
    report = health_check(NO_LATENCY_LIMIT)
    assert report.component("llm-region-a").status is HealthStatus.ok
    assert report.status is not HealthStatus.down
