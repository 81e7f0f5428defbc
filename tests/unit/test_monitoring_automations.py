"""The health monitor's automations as declared (no server), and policy defaults that must agree with prefect.yaml."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prefect.exceptions import ObjectNotFound

from blocks.monitoring_policy import MonitoringPolicy
from deployments.automations import (
    BREACH_NOTIFY,
    FAILOVER_DEPLOYMENT,
    NOTIFIED_FLOWS,
    PIPELINE_FAILURE_NOTIFY,
    PRIMARY_DOWN_FAILOVER,
    down_reports_window,
    failover_on_primary_down,
    follow_health_check_cadence,
    health_check_interval,
    monitoring_automations,
    notify_on_pipeline_failure,
    notify_on_threshold_breach,
)
from tasks.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]


def test_failover_fires_after_n_down_reports_of_the_primary_within_m_minutes() -> None:
    deployment_id = uuid.uuid4()
    a = failover_on_primary_down(deployment_id, count=3, within=timedelta(minutes=10))
    assert a.name == PRIMARY_DOWN_FAILOVER
    assert a.trigger.expect == {"llm-resilience.health.down"}
    assert a.trigger.match.model_dump() == {"prefect.resource.id": "llm-resilience.component.llm-region-a"}
    assert (a.trigger.threshold, a.trigger.within) == (3, timedelta(minutes=10))
    [action] = a.actions
    assert action.deployment_id == deployment_id and action.parameters == {}


def test_failure_notification_covers_every_pipeline_and_the_drill_by_flow_name() -> None:
    block_id = uuid.uuid4()
    a = notify_on_pipeline_failure(block_id)
    assert a.name == PIPELINE_FAILURE_NOTIFY
    assert a.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    related = a.trigger.match_related.model_dump()
    assert related["prefect.resource.role"] == "flow"
    assert {"backup", "replicate", "verify-checkpoint", "prompt-regression", "failover-drill"} <= set(
        related["prefect.resource.name"])
    [action] = a.actions
    assert action.block_document_id == block_id
    assert "{{ flow_run.name }}" in action.subject and "{{ flow_run.state.message }}" in action.body


def test_notified_flow_names_exist_in_the_flows() -> None:
    """A renamed flow would silently drop out of the alerting: every name must be a real flow name."""
    source = "".join(p.read_text() for p in (ROOT / "flows").glob("*.py"))
    missing = [n for n in NOTIFIED_FLOWS if f'name="{n}"' not in source]
    assert not missing


class _Client:
    def __init__(self, *, failover: bool, block: bool) -> None:
        self.failover, self.block = failover, block

    def read_deployment_by_name(self, name: str):  # noqa: ANN201
        if name == FAILOVER_DEPLOYMENT and self.failover:
            return type("D", (), {"id": uuid.uuid4()})
        raise ObjectNotFound(None)

    def read_block_document_by_name(self, name: str, block_type_slug: str):  # noqa: ANN201
        if self.block:
            return type("B", (), {"id": uuid.uuid4()})
        raise ObjectNotFound(None)


def test_failover_automation_waits_for_its_deployment() -> None:
    assert [a.name for a in monitoring_automations(_Client(failover=False, block=True))] == [
        PIPELINE_FAILURE_NOTIFY, BREACH_NOTIFY]
    assert [a.name for a in monitoring_automations(_Client(failover=True, block=True))] == [
        PIPELINE_FAILURE_NOTIFY, BREACH_NOTIFY, PRIMARY_DOWN_FAILOVER]


def test_breach_notification_is_once_an_hour_per_component_and_metric() -> None:
    a = notify_on_threshold_breach(uuid.uuid4())
    assert a.trigger.expect == {"llm-resilience.health.threshold_breached"}
    assert a.trigger.for_each == {"prefect.resource.id", "llm-resilience.metric"}
    assert (a.trigger.threshold, a.trigger.within) == (1, timedelta(hours=1))
    assert "{{ event.payload.threshold }}" in a.actions[0].body


def _health_check_interval() -> timedelta:
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    health = next(d for d in deployments if d["name"] == "health-check")
    return timedelta(seconds=health["schedules"][0]["interval"])


def test_declared_failover_window_holds_its_threshold_of_consecutive_health_reports() -> None:
    """A Reactive trigger counts events strictly before first + within; the health monitor reports once
    per interval, so the threshold-th `down` arrives (threshold - 1) intervals after the first: the
    window must hold it with slack for a late run, yet stay shorter than threshold intervals."""
    [a] = [a for a in monitoring_automations(_Client(failover=True, block=True)) if a.name == PRIMARY_DOWN_FAILOVER]
    interval = _health_check_interval()
    last_report = (a.trigger.threshold - 1) * interval
    assert a.trigger.within - last_report >= timedelta(minutes=1), (a.trigger.within, last_report)
    assert a.trigger.within < a.trigger.threshold * interval


def test_missing_notification_block_is_a_named_error() -> None:
    with pytest.raises(ConfigurationError, match="custom-webhook/llm-resilience-alerts does not exist"):
        monitoring_automations(_Client(failover=True, block=False))


def test_policy_schedule_interval_matches_the_health_check_deployment() -> None:
    assert MonitoringPolicy(state_dir="/tmp/x").schedule_interval_s == _health_check_interval().total_seconds()


class _Schedules:
    """A server holding the health-check deployment (with ``schedules``) and the failover automation."""

    def __init__(self, schedules: list, automation=None) -> None:  # noqa: ANN001
        self.schedules, self.automation, self.updates = schedules, automation, []

    def read_deployment_by_name(self, name: str):  # noqa: ANN201
        assert name == "health-check/health-check"
        return type("D", (), {"id": uuid.uuid4()})

    def read_deployment_schedules(self, deployment_id):  # noqa: ANN001, ANN201
        return [type("S", (), {"schedule": s, "active": active}) for s, active in self.schedules]

    def read_automations_by_name(self, name: str) -> list:
        return [self.automation] if self.automation is not None and name == self.automation.name else []

    def update_automation(self, automation_id, automation) -> None:  # noqa: ANN001
        self.updates.append((automation_id, automation))


def _every(minutes: float):  # noqa: ANN202
    from prefect.client.schemas.schedules import IntervalSchedule

    return IntervalSchedule(interval=timedelta(minutes=minutes))


def test_deployed_schedule_sets_the_interval_not_prefect_yaml() -> None:
    assert health_check_interval(_Schedules([(_every(10), True)])) == timedelta(minutes=10)
    assert health_check_interval(_Schedules([(_every(10), False)])) == _health_check_interval()  # nothing active
    assert health_check_interval(_Client(failover=True, block=True)) == _health_check_interval()  # not deployed


def test_an_edited_schedule_moves_only_the_window_of_the_failover_automation() -> None:
    from prefect.events.schemas.automations import Automation

    declared = failover_on_primary_down(uuid.uuid4(), count=5, within=down_reports_window(5, timedelta(minutes=5)))
    operator_left = Automation(**declared.model_dump(exclude={"id"}), id=uuid.uuid4())
    operator_left.enabled = False  # paused in the UI: following the schedule must not resume it
    server = _Schedules([], operator_left)
    assert follow_health_check_cadence(server, timedelta(minutes=10)) == timedelta(minutes=45)  # 4 x 10 + 5
    [(automation_id, sent)] = server.updates
    assert automation_id == operator_left.id
    assert (sent.trigger.threshold, sent.trigger.within, sent.enabled) == (5, timedelta(minutes=45), False)
    assert sent.actions == declared.actions
    assert "5 times within 0:45:00" in sent.description


def test_a_window_that_fits_is_left_alone() -> None:
    from prefect.events.schemas.automations import Automation

    fits = Automation(**failover_on_primary_down(uuid.uuid4()).model_dump(exclude={"id"}), id=uuid.uuid4())
    server = _Schedules([], fits)
    assert follow_health_check_cadence(server, _health_check_interval()) is None
    assert follow_health_check_cadence(_Schedules([]), timedelta(minutes=10)) is None  # no failover automation
    assert server.updates == []
