"""Scheduled runs missed while the platform was down are cancelled with a reason, on the real
Prefect server; runs that are only a little late, or not yet due, are left to run."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.states import Scheduled

from deployments.settings import PlatformSettings
from deployments.stack.missed_runs import cancel_missed_runs

pytestmark = pytest.mark.integration


def test_runs_missed_while_the_platform_was_down_are_cancelled_and_the_rest_left(platform: PlatformSettings) -> None:
    """Only the starting worker's pool is judged: a late run of another pool is not ours."""
    pools = [f"llmr-missed-{uuid.uuid4().hex[:6]}" for _ in range(2)]  # no worker polls them: runs stay as put
    ours, other = pools
    now = dt.datetime.now(dt.UTC)
    due = {"hours-late": now - dt.timedelta(hours=5), "a-little-late": now - dt.timedelta(minutes=2),
           "not-yet-due": now + dt.timedelta(hours=1)}
    ids: dict[str, object] = {}
    deployments = []
    with get_client(sync_client=True) as client:
        try:
            for pool in pools:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
                flow_id = client.create_flow_from_name(f"missed-probe-{pool}")
                deployments.append(client.create_deployment(flow_id=flow_id, name="missed-probe", work_pool_name=pool))
            for name, when in due.items():
                ids[name] = client.create_flow_run_from_deployment(deployments[0], state=Scheduled(scheduled_time=when)).id
            ids["other-pool-hours-late"] = client.create_flow_run_from_deployment(
                deployments[1], state=Scheduled(scheduled_time=due["hours-late"])).id
            seen: list[str] = []
            cancelled = cancel_missed_runs(platform.prefect_api_url, 600, ours, progress=seen.append)
            states = {name: client.read_flow_run(run_id).state for name, run_id in ids.items()}
        finally:
            for run_id in ids.values():
                client.delete_flow_run(run_id)
            for deployment_id in deployments:
                client.delete_deployment(deployment_id)
            for pool in pools:
                client.delete_work_pool(pool)
    assert states["hours-late"].type.value == "CANCELLED"
    assert states["hours-late"].message.startswith(f"missed: due at {due['hours-late']:%Y-%m-%d %H:%M} UTC while the platform was down")
    assert states["a-little-late"].type.value == "SCHEDULED" and states["not-yet-due"].type.value == "SCHEDULED"
    assert states["other-pool-hours-late"].type.value == "SCHEDULED"
    assert cancelled == 1 and seen == [seen[0]] and f"cancelled 1 scheduled flow run(s) of work pool {ours} missed" in seen[0]
