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
"""

from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation, EventTrigger, Posture, RunDeployment
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.events import ResourceSpecification
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.events.schemas.automations import AutomationCore
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.settings import PlatformSettings

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


def declared(client, settings: PlatformSettings | None = None) -> list[Automation]:  # noqa: ANN001 - a SyncPrefectClient
    """Every automation of the project; deployments they run must already exist."""
    settings = settings or PlatformSettings()
    replicate = client.read_deployment_by_name(REPLICATE_DEPLOYMENT)
    return [replicate_on_write(replicate.id), crash_zombie_runs(settings.zombie_after_s)]


def apply_automations(settings: PlatformSettings) -> list[str]:
    """Create or update each declared automation by name; returns their names."""
    with temporary_settings(updates={PREFECT_API_URL: settings.prefect_api_url}), get_client(sync_client=True) as client:
        names = []
        for automation in declared(client, settings):
            existing = client.read_automations_by_name(automation.name)
            core = AutomationCore(**automation.model_dump(exclude={"id"}))
            if existing:
                client.update_automation(existing[0].id, core)
                for duplicate in existing[1:]:
                    client.delete_automation(duplicate.id)
            else:
                client.create_automation(core)
            names.append(automation.name)
        return names
