"""Automations declared in the repo, applied idempotently (create or update by name).

`make deploy` (deployments/deploy.py) calls ``apply_automations`` after `prefect deploy`, so the
platform always runs the automations this file declares. Add one by appending to ``declared``.

    llm-resilience: replicate on write
        when   `llm-resilience.objects.written` arrives for a storage target
        run    replicate/replicate for the event's prefix (payload.prefix)

Emit that event after writing objects (``announce_objects_written``) to replicate them at once
instead of waiting for the schedule.

    llm-resilience: crash zombie flow runs
        when   a flow run's `prefect.flow-run.heartbeat` is not followed by another heartbeat or a
               terminal state within `zombie_after_s` (its worker or machine died)
        do     mark the run Crashed (Prefect's documented zombie-flow automation), so it can be retried

    llm-resilience: fail over when the primary model endpoint is down
        when   `llm-resilience.health.down` for llm-region-a arrives FAILOVER_DOWN_COUNT times
               within (count - 1) health-check intervals plus slack (the health monitor emits
               one per run): 12.5 minutes for 3 at prefect.yaml's 300 s. The interval is the
               deployed schedule's, and each health-check run from the deployment moves the
               window when an operator has changed that schedule (``follow_health_check_cadence``)
        run    regional-failover/regional-failover (declared only once that deployment exists)

    llm-resilience: notify on pipeline failure
        when   a flow run of a backup, replication, checkpoint, prompt or drill flow turns
               Failed or Crashed (matched by flow name, so runs started from Python count too)
        send   the run's name, flow, state and reason through the `llm-resilience-alerts`
               Custom Webhook block (the exporter's local inbox by default; edit its URL in the UI)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect.automations import Automation, EventTrigger, Posture, RunDeployment, SendNotification
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.events import ResourceSpecification
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.events.schemas.automations import AutomationCore
from prefect.settings import PREFECT_API_URL, temporary_settings

from blocks.monitoring_policy import MonitoringPolicy
from deployments.settings import PlatformSettings
from tasks.schedule_cadence import cadence

OBJECTS_WRITTEN_EVENT = "llm-resilience.objects.written"
REPLICATE_ON_WRITE = "llm-resilience: replicate on write"
REPLICATE_DEPLOYMENT = "replicate/replicate"


def announce_objects_written(target: str, prefix: str, count: int | None = None) -> None:
    """Tell the platform that objects were written below ``prefix`` of storage-target ``target``."""
    emit_event(
        event=OBJECTS_WRITTEN_EVENT,
        resource={"prefect.resource.id": f"llm-resilience.storage.{target}", "llm-resilience.storage-target": target},
        payload={"prefix": prefix, "count": count},
    )


def replicate_on_write(deployment_id) -> Automation:  # noqa: ANN001 - a UUID
    return Automation(
        name=REPLICATE_ON_WRITE,
        description="Replicate a prefix as soon as an event announces new objects there.",
        trigger=EventTrigger(
            expect={OBJECTS_WRITTEN_EVENT},
            match={"prefect.resource.id": "llm-resilience.storage.region-a"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            RunDeployment(
                source="selected", deployment_id=deployment_id,
                parameters={"params": {"prefix": "{{ event.payload.prefix }}"}},
            )
        ],
    )


CRASH_ZOMBIES = "llm-resilience: crash zombie flow runs"


def crash_zombie_runs(within_s: int) -> Automation:
    """Prefect's zombie-flow recipe: a Running run whose heartbeats stop is marked Crashed."""
    return Automation(
        name=CRASH_ZOMBIES,
        description=f"Mark a flow run Crashed when {within_s} s pass after a heartbeat with neither another heartbeat nor a final state.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_s),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=f"No heartbeat for {within_s} s: its worker or host died.")],
    )


PRIMARY_DOWN_FAILOVER = "llm-resilience: fail over when the primary model endpoint is down"
FAILOVER_DEPLOYMENT = "regional-failover/regional-failover"
HEALTH_CHECK_DEPLOYMENT = "health-check/health-check"
PRIMARY_MODEL_COMPONENT = "llm-region-a"
FAILOVER_DOWN_COUNT = 3
# The health-check schedule as prefect.yaml declares it (a unit test keeps the policy default equal
# to it); used only until the deployment exists, whose schedule an operator may edit.
HEALTH_CHECK_INTERVAL = timedelta(seconds=MonitoringPolicy.model_fields["schedule_interval_s"].default)


def down_reports_window(count: int, interval: timedelta) -> timedelta:
    """How long ``count`` consecutive health reports take to arrive, with slack for late runs.

    The last report comes (count - 1) intervals after the first, and a Reactive trigger counts
    only events strictly before first + ``within``: a window of exactly (count - 1) intervals
    fires only when a run happens to be early. Half an interval of slack absorbs a late run
    (worker polling, slow probes) without letting a further report into the same window.
    """
    return (count - 1) * interval + interval / 2


FAILOVER_WITHIN = down_reports_window(FAILOVER_DOWN_COUNT, HEALTH_CHECK_INTERVAL)


def failover_description(count: int, within: timedelta) -> str:
    return f"Run the regional failover when the health monitor reports {PRIMARY_MODEL_COMPONENT} down {count} times within {within}."


def failover_on_primary_down(deployment_id, count: int = FAILOVER_DOWN_COUNT,  # noqa: ANN001 - a UUID
                             within: timedelta = FAILOVER_WITHIN) -> Automation:
    return Automation(
        name=PRIMARY_DOWN_FAILOVER,
        description=failover_description(count, within),
        trigger=EventTrigger(
            expect={"llm-resilience.health.down"},
            match={"prefect.resource.id": f"llm-resilience.component.{PRIMARY_MODEL_COMPONENT}"},
            posture=Posture.Reactive,
            threshold=count,
            within=within,
        ),
        actions=[RunDeployment(source="selected", deployment_id=deployment_id, parameters={})],
    )


def health_check_interval(client, now: datetime | None = None) -> timedelta:  # noqa: ANN001 - a SyncPrefectClient
    """How often the deployed health check runs now (its active schedules, as edited in the UI);
    prefect.yaml's interval while it is not deployed or has no active schedule."""
    deployment_id = _optional_deployment_id(client, HEALTH_CHECK_DEPLOYMENT)
    if deployment_id is None:
        return HEALTH_CHECK_INTERVAL
    return deployment_cadence(client, deployment_id, now) or HEALTH_CHECK_INTERVAL


def deployment_cadence(client, deployment_id, now: datetime | None = None) -> timedelta | None:  # noqa: ANN001
    schedules = client.read_deployment_schedules(deployment_id)
    return cadence([(s.schedule, s.active) for s in schedules], now or datetime.now(timezone.utc))


def follow_health_check_cadence(client, interval: timedelta) -> timedelta | None:  # noqa: ANN001 - a SyncPrefectClient
    """Keep the failover automation's window at its threshold of consecutive health reports when
    the health check's schedule changes. Only the window (and the description quoting it) moves:
    the threshold, the enabled flag and the actions stay as the operator left them. Returns the
    new window, or None when there is no such automation or its window already fits."""
    existing = client.read_automations_by_name(PRIMARY_DOWN_FAILOVER)
    if not existing:
        return None
    automation = existing[0]
    within = down_reports_window(automation.trigger.threshold, interval)
    if abs(automation.trigger.within - within) < timedelta(seconds=1):  # the server keeps seconds
        return None
    automation.trigger.within = within
    automation.description = failover_description(automation.trigger.threshold, within)
    client.update_automation(automation.id, AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"})))
    return within


def _optional_deployment_id(client, name: str):  # noqa: ANN001, ANN202
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(name).id
    except ObjectNotFound:
        return None


PIPELINE_FAILURE_NOTIFY = "llm-resilience: notify on pipeline failure"
ALERTS_BLOCK = "llm-resilience-alerts"
# Flow names (not deployment names) so a failing run counts however it was started.
NOTIFIED_FLOWS = [
    "backup", "restore", "prune", "verify-backup", "restore-drill",  # flows/backup.py
    "replicate", "replication-status",  # flows/replication.py
    "verify-checkpoint",  # flows/checkpoint_verification.py
    "prompt-regression", "promote-prompt", "manage-prompt",  # flows/prompt_regression.py
    "failover-drill", "regional-failover", "failback",  # flows/failover_drill.py, flows/regional_failover.py
]
FAILURE_SUBJECT = "llm-resilience: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
FAILURE_BODY = (
    "Flow run {{ flow.name }}/{{ flow_run.name }} ended {{ flow_run.state.name }}.\n"
    "Reason: {{ flow_run.state.message }}\n"
    "Flow run id: {{ flow_run.id }}\n"
    "Tags: {{ flow_run.tags | join(', ') }}"
)


def notify_on_pipeline_failure(block_document_id) -> Automation:  # noqa: ANN001 - a UUID
    return Automation(
        name=PIPELINE_FAILURE_NOTIFY,
        description="Send a notification when a backup, replication, checkpoint, prompt or drill run fails.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": NOTIFIED_FLOWS},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=FAILURE_SUBJECT, body=FAILURE_BODY)],
    )


BREACH_NOTIFY = "llm-resilience: notify on threshold breach"
BREACH_EVENT = "llm-resilience.health.threshold_breached"
BREACH_REPEAT_AFTER = timedelta(hours=1)
BREACH_SUBJECT = "llm-resilience: {{ event.payload.component }} {{ event.payload.metric }} breached its threshold"
BREACH_BODY = (
    "{{ event.payload.component }}: {{ event.payload.metric }} = {{ event.payload.value }} breaches "
    "{{ event.payload.threshold }} (limit {{ event.payload.limit }}, baseline {{ event.payload.baseline }}).\n"
    "Reported by the health monitor at {{ event.occurred }}."
)


def notify_on_threshold_breach(block_document_id) -> Automation:  # noqa: ANN001 - a UUID
    """One notification per component and metric per hour: a breach that persists does not page every run."""
    return Automation(
        name=BREACH_NOTIFY,
        description="Send a notification when the health monitor reports a threshold breach (at most hourly per metric).",
        trigger=EventTrigger(
            expect={BREACH_EVENT},
            match={"prefect.resource.id": "llm-resilience.component.*"},
            for_each={"prefect.resource.id", "llm-resilience.metric"},
            posture=Posture.Reactive,
            threshold=1,
            within=BREACH_REPEAT_AFTER,
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=BREACH_SUBJECT, body=BREACH_BODY)],
    )


def _notification_block_id(client, name: str):  # noqa: ANN001, ANN202
    from prefect.exceptions import ObjectNotFound

    from tasks.errors import ConfigurationError

    try:
        return client.read_block_document_by_name(name, block_type_slug="custom-webhook").id
    except ObjectNotFound:
        raise ConfigurationError(
            f"notification block custom-webhook/{name} does not exist; `make stack-up` creates it "
            "(or create a Custom Webhook block of that name in the UI)"
        ) from None


def monitoring_automations(client) -> list[Automation]:  # noqa: ANN001 - a SyncPrefectClient
    """The health monitor's automations (issue 8); failover only once its deployment exists."""
    alerts = _notification_block_id(client, ALERTS_BLOCK)
    out = [notify_on_pipeline_failure(alerts), notify_on_threshold_breach(alerts)]
    failover = _optional_deployment_id(client, FAILOVER_DEPLOYMENT)
    if failover is not None:
        out.append(failover_on_primary_down(failover, within=down_reports_window(FAILOVER_DOWN_COUNT, health_check_interval(client))))
    return out


def declared(client, settings: PlatformSettings | None = None) -> list[Automation]:  # noqa: ANN001 - a SyncPrefectClient
    """Every automation of the project; deployments they run must already exist."""
    settings = settings or PlatformSettings()
    replicate = client.read_deployment_by_name(REPLICATE_DEPLOYMENT)
    return [replicate_on_write(replicate.id), crash_zombie_runs(settings.zombie_after_s), *monitoring_automations(client)]


def apply_automations(settings: PlatformSettings) -> list[str]:
    """Create or update each declared automation by name; returns their names."""
    with temporary_settings(updates={PREFECT_API_URL: settings.prefect_api_url}), get_client(sync_client=True) as client:
        names = []
        for automation in declared(client, settings):
            existing = client.read_automations_by_name(automation.name)
            if existing:
                # the server's update schema has no owner_resource (an owner is set at creation) and
                # refuses it even as null, so a second `make deploy` must not send it
                client.update_automation(existing[0].id, AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"})))
                for duplicate in existing[1:]:
                    client.delete_automation(duplicate.id)
            else:
                client.create_automation(AutomationCore(**automation.model_dump(exclude={"id"})))
            names.append(automation.name)
        return names
