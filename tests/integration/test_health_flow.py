"""The health flow against the real platform: all ok, a killed model server down, back after restart."""

import os
import signal
import time

import httpx
import psutil
import pytest

from deployments.settings import PlatformSettings
from deployments.stack.launcher import Launcher
from flows.health import REPORT_ARTIFACT_KEY, HealthTargets, health_check
from tasks.health_probes import HealthStatus, ProbePolicy

# These tests check what the probes find, not how fast the machine is: a latency threshold no
# run can reach keeps "slow" (degraded) out of them, so no assertion here is a wall-clock limit.
NO_LATENCY_LIMIT = HealthTargets(policy=ProbePolicy(degraded_latency_ms=3_600_000, timeout_s=120))

pytestmark = pytest.mark.integration


def _events(settings: PlatformSettings, resource_id: str, event: str, since: float) -> list[dict]:
    """Events the server has recorded for a component since ``since`` (events arrive asynchronously)."""
    from datetime import datetime, timezone

    body = {
        "filter": {
            "occurred": {"since": datetime.fromtimestamp(since, timezone.utc).isoformat()},
            "event": {"name": [event]},
            "resource": {"id": [resource_id]},
        },
        "limit": 50,
    }
    deadline = time.time() + 30
    while True:
        resp = httpx.post(f"{settings.prefect_api_url}/events/filter", json=body, timeout=10)
        resp.raise_for_status()
        found = resp.json()["events"]
        if found or time.time() > deadline:
            return found
        time.sleep(0.5)


def test_health_is_ok_everywhere_and_reported(platform: PlatformSettings) -> None:
    started = time.time()
    report = health_check(NO_LATENCY_LIMIT)
    bad = [(r.component, r.status.value, r.detail) for r in report.results if r.status is not HealthStatus.ok]
    assert not bad
    assert {r.component for r in report.results} == {
        "storage-region-a", "storage-region-b", "llm-region-a", "llm-region-b", "gateway",
        "sessions-region-a", "sessions-region-b", "prefect-api",
    }
    assert report.component("gateway").metrics["served_by"] == "region-a"
    assert report.component("sessions-region-b").metrics["role"] == "replica"

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=50)
    table = next(a for a in artifact if a.key == REPORT_ARTIFACT_KEY)
    assert "llm-region-a" in str(table.data)
    events = _events(platform, "llm-resilience.component.llm-region-a", "llm-resilience.health.ok", started)
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
        events = _events(platform, "llm-resilience.component.llm-region-a", "llm-resilience.health.down", started)
        assert events and events[0]["payload"]["status"] == "down"
    finally:
        assert launcher.up() == ["llm-region-a"]
    report = health_check(NO_LATENCY_LIMIT)
    assert report.component("llm-region-a").status is HealthStatus.ok
    assert report.status is not HealthStatus.down
