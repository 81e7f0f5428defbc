"""Health check: probe every component of the platform, report, and emit one event per component.

    from flows.health import health_check
    report = health_check()

A component that is down is a finding in the report, never a crashed run: the run fails only
when the probes themselves could not be run.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event
from prefect.settings import PREFECT_API_URL
from pydantic import BaseModel, Field

from tasks.health import probe_llm_endpoint, probe_prefect_api, probe_session_store, probe_storage
from tasks.health_probes import HealthStatus, ProbePolicy, ProbeResult
from tasks.health_report import HealthReport

REPORT_ARTIFACT_KEY = "health-report"
EVENT_PREFIX = "llm-resilience.health"


class HealthTargets(BaseModel):
    """Which block documents to probe (the local platform's by default) and how hard to try."""

    storage: list[str] = Field(default=["region-a", "region-b"], description="StorageTarget block names.")
    llm_endpoints: list[str] = Field(default=["region-a", "region-b"], description="LLMEndpoint blocks of model servers.")
    gateways: list[str] = Field(default=["gateway"], description="LLMEndpoint blocks of gateways.")
    session_stores: list[str] = Field(default=["region-a", "region-b"], description="SessionStore block names.")
    check_prefect_api: bool = Field(default=True, description="Probe the Prefect API this run reports to.")
    policy: ProbePolicy = Field(default_factory=ProbePolicy)


@flow(name="health-check", log_prints=True)
def health_check(targets: HealthTargets | None = None) -> HealthReport:
    targets = targets or HealthTargets()
    logger = get_run_logger()
    policy = targets.policy
    futures = [probe_storage.submit(name, policy) for name in targets.storage]
    futures += [probe_llm_endpoint.submit(name, policy) for name in targets.llm_endpoints]
    futures += [probe_llm_endpoint.submit(name, policy, kind="gateway") for name in targets.gateways]
    futures += [probe_session_store.submit(name, policy) for name in targets.session_stores]
    if targets.check_prefect_api:
        futures.append(probe_prefect_api.submit(PREFECT_API_URL.value(), policy))

    results: list[ProbeResult] = []
    for future in futures:
        state = future.wait() or future.state
        if state.is_completed():
            results.append(future.result())
        else:
            # The task itself crashed after its retries: still a finding about that component.
            results.append(
                ProbeResult(
                    component=f"task:{future.task_run_id}", kind="probe", target="", status=HealthStatus.down,
                    detail=f"probe task ended {state.type.value}: {state.message}"[:500],
                )
            )

    report = HealthReport(results=results)
    publish_report(report)
    emit_component_events(report)
    counts = report.counts()
    logger.info(
        "health: %s (%d ok, %d degraded, %d down)", report.status.value, counts["ok"], counts["degraded"], counts["down"]
    )
    return report


def publish_report(report: HealthReport) -> None:
    counts = report.counts()
    create_table_artifact(
        key=REPORT_ARTIFACT_KEY,
        table=report.table_rows(),
        description=(
            f"Platform health at {report.checked_at:%Y-%m-%d %H:%M:%S} UTC: **{report.status.value}** "
            f"({counts['ok']} ok, {counts['degraded']} degraded, {counts['down']} down)"
        ),
    )


def emit_component_events(report: HealthReport) -> None:
    for r in report.results:
        emit_event(
            event=f"{EVENT_PREFIX}.{r.status.value}",
            resource={
                "prefect.resource.id": f"llm-resilience.component.{r.component}",
                "prefect.resource.name": r.component,
                "llm-resilience.kind": r.kind,
            },
            payload={
                "status": r.status.value,
                "latency_ms": r.latency_ms,
                "attempts": r.attempts,
                "target": r.target,
                "detail": r.detail,
                "metrics": r.metrics,
            },
        )


if __name__ == "__main__":
    print(health_check().model_dump_json(indent=2))
