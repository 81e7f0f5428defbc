"""The automation chain end to end, with no manual step: region-a's model server dies, the
monitor reports it down, the declared automation runs `regional-failover`, traffic ends on region-b.

`regional-failover/regional-failover` is issue 7's deployment (parameter-free: region-a's
gateway server into maintenance, region-b's Redis promoted). The automation is declared by
`deployments/automations.py` when `deployed` runs `make deploy`'s step.
"""

from __future__ import annotations

import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.objects import StateType

from deployments.automations import FAILOVER_DEPLOYMENT, FAILOVER_DOWN_COUNT, PRIMARY_DOWN_FAILOVER
from deployments.settings import PlatformSettings
from flows.health import HealthTargets, health_check
from flows.regional_failover import failback
from tasks.fault_injectors import ProcessFault
from tasks.health_probes import HealthStatus, ProbePolicy
from tasks.regional_failover import FailbackPolicy
from tasks.session_topology import is_primary
from tests.integration.test_failover_drills import await_healthy_platform
from tests.integration.test_regional_failover import nodes, served_by

pytestmark = pytest.mark.integration

# The monitor as scheduled, narrowed to the primary model endpoint so each run is quick.
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


def test_primary_down_reports_start_the_regional_failover(deployed: PlatformSettings) -> None:
    await_healthy_platform(deployed)
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name(PRIMARY_DOWN_FAILOVER), "the failover automation was not declared"
    known = {run.id for run in _failover_runs()}
    fault = ProcessFault(deployed, ["llm-region-a"], kind="crash")
    fault.inject(lease_s=600)
    try:
        for _ in range(FAILOVER_DOWN_COUNT):
            assert health_check(MONITOR).component("llm-region-a").status is HealthStatus.down
        run = _wait_for_finished_failover(known)
        assert run is not None, "the automation did not start regional-failover"
        assert run.state.type is StateType.COMPLETED, run.state
        assert served_by(deployed, 4) == ["region-b"] * 4
        # The failover moved traffic on purpose, not just HAProxy's health checks: with region-a's
        # model server back, traffic stays on region-b, and region-b's Redis is the primary now.
        fault.rollback()
        assert served_by(deployed, 4) == ["region-b"] * 4
        assert is_primary(nodes(deployed)[1])
    finally:
        fault.rollback()
        # Back to the platform every other test expects, the way an operator would: the failback flow.
        # Latency limits off: this test is about the chain, and a just-restarted model server on a
        # loaded machine can answer slowly at first.
        failback(policy=FailbackPolicy(steps_percent=[100], hold_s=1, max_p99_ms=600_000))
    await_healthy_platform(deployed)
    assert served_by(deployed, 4).count("region-a") >= 3
