"""The automation chain end to end, with no manual step: region-a's model server dies, the
monitor reports it down, the declared automation runs `regional-failover`, traffic ends on region-b.

`regional-failover/regional-failover` is issue 7's deployment (parameter-free: moves gateway
traffic to region-b and promotes region-b's Redis). The automation is declared by
`deployments/automations.py` when `deployed` runs `make deploy`'s step.
"""

from __future__ import annotations

import time

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.objects import StateType

from deployments.automations import FAILOVER_DEPLOYMENT, FAILOVER_DOWN_COUNT, PRIMARY_DOWN_FAILOVER
from deployments.settings import PlatformSettings
from deployments.stack.launcher import Launcher
from flows.health import HealthTargets, health_check
from tasks.fault_injectors import ProcessFault
from tasks.health_probes import HealthStatus, ProbePolicy

pytestmark = pytest.mark.integration

MONITOR = HealthTargets(storage=[], gateways=[], session_stores=[], check_prefect_api=False,
                        llm_endpoints=["region-a"], policy=ProbePolicy(degraded_latency_ms=3_600_000, timeout_s=60))


def _failover_runs() -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[FAILOVER_DEPLOYMENT.split("/")[1]])),
        )


def _wait_for_finished_failover(known: set, timeout_s: float = 240):  # noqa: ANN001, ANN202
    """The first regional-failover run not in ``known`` that reached a final state; None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run in _failover_runs():
            if run.id not in known and run.state and run.state.is_final():
                return run
        time.sleep(1)
    return None


def _served_by(settings: PlatformSettings) -> str | None:
    resp = httpx.post(f"{settings.gateway_url}/chat/completions", timeout=60, json={
        "model": settings.llm_model_alias, "max_tokens": 4, "temperature": 0,
        "messages": [{"role": "user", "content": "Reply with the single word OK."}],
    })
    resp.raise_for_status()
    return resp.headers.get("x-llmr-backend")


def test_primary_down_reports_start_the_regional_failover(deployed: PlatformSettings) -> None:
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name(PRIMARY_DOWN_FAILOVER), "the failover automation was not declared"
    known = {run.id for run in _failover_runs()}
    launcher = Launcher(deployed)
    fault = ProcessFault(deployed, ["llm-region-a"], kind="crash")
    fault.inject(lease_s=600)
    try:
        for _ in range(FAILOVER_DOWN_COUNT):
            report = health_check(MONITOR)
            assert report.component("llm-region-a").status is HealthStatus.down
        run = _wait_for_finished_failover(known)
        assert run is not None, "the automation did not start regional-failover"
        assert run.state.type is StateType.COMPLETED, run.state
        assert _served_by(deployed) == "region-b"
        # The failover moved traffic on purpose (not just HAProxy's health check): with region-a's
        # model server back, traffic stays on region-b, and region-b's Redis is the primary now.
        fault.rollback()
        assert _served_by(deployed) == "region-b"
        sessions = health_check(HealthTargets(storage=[], llm_endpoints=[], gateways=[], check_prefect_api=False,
                                              session_stores=["region-b"], monitoring_policy=None))
        assert sessions.component("sessions-region-b").metrics["role"] == "primary"
    finally:
        fault.rollback()
        # Back to the platform every other test expects: gateway and region-b's Redis from their configs.
        launcher.down(["gateway", "redis-region-b"])
        launcher.up(["redis-region-b", "gateway"])
    assert _served_by(deployed) == "region-a"
