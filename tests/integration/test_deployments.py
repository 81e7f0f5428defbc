"""prefect.yaml deployed to the real server and run by the real worker."""

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.deployments import run_deployment

from deployments.settings import PlatformSettings
from flows.health import REPORT_ARTIFACT_KEY

pytestmark = pytest.mark.integration


def test_health_check_deployment_is_scheduled_every_five_minutes(deployed: PlatformSettings) -> None:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("health-check/health-check")
        schedules = client.read_deployment_schedules(deployment.id)
    assert deployment.work_pool_name == deployed.work_pool
    assert [s.schedule.interval.total_seconds() for s in schedules] == [300.0]
    assert all(s.active for s in schedules)


def test_health_check_deployment_runs_through_the_worker(deployed: PlatformSettings) -> None:
    run = run_deployment("health-check/health-check", timeout=300, poll_interval=1, as_subflow=False)
    assert run.state is not None and run.state.is_completed(), run.state
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[REPORT_ARTIFACT_KEY]), flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])
            )
        )
        flow_run = client.read_flow_run(run.id)
    assert len(artifacts) == 1
    rows = json.loads(artifacts[0].data) if isinstance(artifacts[0].data, str) else artifacts[0].data
    assert {row["component"] for row in rows} >= {"gateway", "llm-region-a", "sessions-region-b"}
    assert flow_run.work_pool_name == deployed.work_pool


def test_the_server_schedules_runs_of_scheduled_deployments(deployed: PlatformSettings) -> None:
    """Schedules are the product's point: the server's scheduler must create the coming runs
    (with SQLAlchemy 2.1 it failed every cycle and no schedule ever produced a run)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        health = client.read_deployment_by_name("health-check/health-check")
        client.resume_deployment(health.id)  # the session pauses every schedule; this one runs again
        while True:
            scheduled = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["health-check"])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
            )
            if scheduled or time.monotonic() > deadline:
                break
            time.sleep(2)
        client.pause_deployment(health.id)  # pausing also deletes the runs it had scheduled...
        # ...but not one the scheduler was inserting meanwhile (CI: it ran during the next test)
        for run in client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["health-check"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
        ):
            client.delete_flow_run(run.id)
    assert scheduled, "no Scheduled run of health-check/health-check within 120 s of deploying it"


def test_deploying_again_updates_the_automations_in_place(deployed: PlatformSettings) -> None:
    """A second `make deploy` (or `make demo`) on the same server: each declared automation is
    updated where it is, edits undone, none duplicated (the server's update schema refused the
    first version of this)."""
    from deployments.automations import apply_automations

    with get_client(sync_client=True) as client:
        before = {a.name: a for a in client.read_automations() if a.name.startswith("llm-resilience")}
        assert before, "make deploy declared no automations"
        edited = next(iter(before.values()))
        client.pause_automation(edited.id)  # an operator's edit in the UI
        names = apply_automations(deployed)
        after = {a.name: a for a in client.read_automations() if a.name.startswith("llm-resilience")}
        assert sorted(names) == sorted(before) == sorted(after)
        assert len([a for a in client.read_automations() if a.name in names]) == len(names)  # no duplicates
        assert all(after[n].id == before[n].id for n in names)
        assert after[edited.name].enabled is True


def test_a_health_check_run_moves_the_failover_window_to_an_edited_schedule(deployed: PlatformSettings) -> None:
    """An operator makes the health check run every 10 minutes in the UI: with the window still
    sized for 5, three consecutive down reports could never fall inside it and automatic failover
    would silently stop. The next run from the deployment moves the window; the threshold stays."""
    import time
    from datetime import datetime, timedelta, timezone

    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterStartTime, LogFilter, LogFilterFlowRunId,
    )
    from prefect.client.schemas.schedules import IntervalSchedule

    from deployments.automations import (
        FAILOVER_DOWN_COUNT, PRIMARY_DOWN_FAILOVER, down_reports_window, follow_health_check_cadence,
    )
    from flows.health import HealthTargets

    probes_only = HealthTargets(storage=[], gateways=[], session_stores=[], llm_endpoints=[], check_prefect_api=True,
                                monitoring_policy=None)
    with get_client(sync_client=True) as client:
        health = client.read_deployment_by_name("health-check/health-check")
        [declared] = client.read_deployment_schedules(health.id)
        [failover] = client.read_automations_by_name(PRIMARY_DOWN_FAILOVER)
        assert failover.trigger.within == down_reports_window(FAILOVER_DOWN_COUNT, timedelta(minutes=5))
        edited = datetime.now(timezone.utc)
        client.update_deployment_schedule(health.id, declared.id, schedule=IntervalSchedule(interval=timedelta(minutes=10)))
    try:
        run = run_deployment("health-check/health-check", parameters={"targets": probes_only.model_dump(mode="json")},
                             timeout=300, poll_interval=1, as_subflow=False)
        assert run.state is not None and run.state.is_completed(), run.state
        with get_client(sync_client=True) as client:
            [moved] = client.read_automations_by_name(PRIMARY_DOWN_FAILOVER)
        assert moved.id == failover.id
        assert (moved.trigger.threshold, moved.trigger.within) == (FAILOVER_DOWN_COUNT, timedelta(minutes=25))
        assert "within 0:25:00" in moved.description
        # Whichever run of the deployment moved the window says so: a run the server scheduled from
        # the edited schedule may start first (seen in CI: it moved the window, and this test's
        # run, finding it moved, had nothing to say).
        said = "failover automation: window now 0:25:00, for health checks every 0:10:00"
        deadline, logs = time.monotonic() + 30, []
        while not any(said in log.message for log in logs) and time.monotonic() < deadline:  # logs arrive in batches
            time.sleep(1)
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[health.id])),
                                             flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=edited)))
                logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs])))
        assert any(said in log.message for log in logs), [log.message for log in logs]
    finally:
        with get_client(sync_client=True) as client:
            client.update_deployment_schedule(health.id, declared.id, schedule=declared.schedule)
            follow_health_check_cadence(client, timedelta(minutes=5))
