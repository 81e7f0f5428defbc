"""Health check and monitor: probe every component, record metrics, judge thresholds, report.

    from flows.health import health_check
    report = health_check()

A component that is down is a finding in the report, never a crashed run: the run fails only
when the probes themselves could not be run, or the monitoring policy is invalid (checked first).

With a monitoring policy (the `monitoring-policy/platform` block, see blocks/monitoring_policy.py)
each run also records response time, error rate and CPU/memory/GPU use in the time-series store,
emits `llm-resilience.health.threshold_breached` per breach and `.prompt_shift` per prompt shift,
and publishes the `platform-status` artifact and the snapshot the /metrics exporter serves.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.events import emit_event
from prefect.settings import PREFECT_API_URL
from pydantic import Field

from blocks import MonitoringPolicy
from deployments.automations import deployment_cadence, follow_health_check_cadence
from tasks.health import probe_llm_endpoint, probe_prefect_api, probe_session_store, probe_storage
from tasks.health_probes import HealthStatus, ProbePolicy, ProbeResult, flag_split_brain
from tasks.health_report import HealthReport
from tasks.metrics_store import MetricsStore
from tasks.monitoring import (
    assess_prompts,
    check_notification_target,
    component_rows,
    load_policy,
    policy_interval_drift,
    probe_prompt_versions,
    probe_samples,
    read_platform_summary,
    resource_samples,
    sample_resources_task,
)
from tasks.platform_status import MonitorSnapshot, render_markdown
from tasks.platform_summary import PlatformSummary
from tasks.resource_usage import ResourceReport
from tasks.strict_input import StrictInput
from tasks.thresholds import Sample, evaluate, unmatched_components

REPORT_ARTIFACT_KEY = "health-report"
STATUS_ARTIFACT_KEY = "platform-status"
EVENT_PREFIX = "llm-resilience.health"


class HealthTargets(StrictInput):
    """Which block documents to probe (the local platform's by default) and how hard to try."""

    storage: list[str] = Field(default=["region-a", "region-b"], description="StorageTarget block names.")
    llm_endpoints: list[str] = Field(default=["region-a", "region-b"], description="LLMEndpoint blocks of model servers.")
    gateways: list[str] = Field(default=["gateway"], description="LLMEndpoint blocks of gateways.")
    session_stores: list[str] = Field(default=["region-a", "region-b"], description="SessionStore block names.")
    check_prefect_api: bool = Field(default=True, description="Probe the Prefect API this run reports to.")
    policy: ProbePolicy = Field(default_factory=ProbePolicy)
    monitoring_policy: str | None = Field(
        default="platform", description="MonitoringPolicy block: metrics, thresholds, status page. None: probes only.")


@flow(name="health-check", log_prints=True)
def health_check(targets: HealthTargets | None = None) -> HealthReport:
    targets = targets or HealthTargets()
    logger = get_run_logger()
    monitoring = load_policy(targets.monitoring_policy) if targets.monitoring_policy else None
    now = datetime.now(timezone.utc)
    policy = targets.policy
    if monitoring is not None:
        resources_future = sample_resources_task.submit(monitoring)
        prompt_future = probe_prompt_versions.submit(monitoring, now)
        summary_future = read_platform_summary.submit(now)
        notify_future = check_notification_target.submit(monitoring)
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

    if monitoring is not None:
        notify_state = notify_future.wait() or notify_future.state
        if not notify_state.is_completed():
            results.append(ProbeResult(component="notifications", kind="alerts", target=str(monitoring.notification_block),
                                       status=HealthStatus.degraded, detail=f"check ended {notify_state.type.value}: "
                                       f"{notify_state.message}"[:500]))
        elif (notify := notify_future.result()) is not None:
            results.append(notify)
    report = HealthReport(checked_at=now, results=flag_split_brain(results, policy))
    # Events first: the failover automation counts them, and nothing the monitor does after may hold them up.
    publish_report(report)
    emit_component_events(report)
    interval = follow_schedule_edits(_deployment_id())
    if monitoring is not None and interval is not None and targets.monitoring_policy:
        if drift := policy_interval_drift(monitoring, targets.monitoring_policy, interval):
            logger.warning(drift)
    if monitoring is not None:
        monitor(report, monitoring, resources_future.result(), prompt_future.result(), summary_future.result())
    counts = report.counts()
    logger.info(
        "health: %s (%d ok, %d degraded, %d down)", report.status.value, counts["ok"], counts["degraded"], counts["down"]
    )
    return report


def follow_schedule_edits(deployment_id: str | None) -> timedelta | None:
    """A run from the deployment moves the failover automation's window to the schedule it runs on
    now: edited in the UI to run less often, a window sized for the old cadence could never hold
    its count of down reports, and automatic failover would silently stop. A failure here is
    logged, never the run's: the reports are this flow's job. Returns the deployment's cadence
    (None without a deployment, an active schedule, or an answer from the API)."""
    if not deployment_id:
        return None  # run from Python: no schedule of its own to follow
    logger = get_run_logger()
    try:
        with get_client(sync_client=True) as client:
            interval = deployment_cadence(client, deployment_id)
            within = follow_health_check_cadence(client, interval) if interval else None
    except Exception as exc:  # noqa: BLE001 - the health report must not fail on this
        logger.warning("could not check the failover automation's window against this deployment's schedule: %s", exc)
        return None
    if within is not None:
        logger.info("failover automation: window now %s, for health checks every %s (the deployment's schedule)",
                    within, interval)
    return interval


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


def _flow_run():  # noqa: ANN202 - a FlowRun, or None outside a flow run
    try:
        return get_run_context().flow_run
    except Exception:  # noqa: BLE001 - called outside a flow run
        return None


def _deployment_id() -> str | None:
    """This run's own deployment (None when started from Python, or as a subflow of another
    deployment's run, whose schedule is not the health check's)."""
    run = _flow_run()
    return str(run.deployment_id) if run is not None and run.deployment_id else None


def _run_id() -> str:
    run = _flow_run()
    return str(run.id) if run is not None else f"local-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"


def monitor(
    report: HealthReport, monitoring: MonitoringPolicy, resources: ResourceReport,
    prompt_probes: tuple[list[Sample], list[str]], pipelines: tuple[PlatformSummary, list[str]],
) -> MonitorSnapshot:
    """Store this run's samples, judge thresholds and prompt shifts, publish the status page."""
    now = report.checked_at
    probes, probe_notes = prompt_probes
    summary, summary_notes = pipelines
    store = MetricsStore(monitoring.store_path, retention=timedelta(days=monitoring.retention_days))
    samples = probe_samples(report.results, now) + resource_samples(resources, now) + probes
    longest = max((t.window_minutes + t.baseline_window_minutes for t in monitoring.thresholds), default=60)
    history = store.since(now - timedelta(minutes=longest))
    breaches = evaluate(monitoring.thresholds, samples, history, now)
    threshold_notes = unmatched_components(monitoring.thresholds, samples)
    for note in threshold_notes:
        get_run_logger().warning("monitoring policy: %s", note)
    store.record(_run_id(), samples, breaches, at=now)
    prompt_history = store.since(now - timedelta(days=monitoring.retention_days))
    prompts, prompt_notes = assess_prompts(monitoring, [s for s in prompt_history if s.component.startswith("prompt:")])
    snapshot = MonitorSnapshot(
        at=now, run_id=_run_id(), components=component_rows(report.results, resources, store, now),
        gpu_present=resources.gpu_present, gpu_detail=resources.gpu_detail, gpus=resources.gpus, breaches=breaches,
        breach_counts={f"{c}|{m}": n for (c, m), n in store.breach_counts().items()}, runs_total=store.run_count(),
        summary=summary, prompts=prompts, notes=threshold_notes + probe_notes + summary_notes + prompt_notes,
    )
    snapshot.save(monitoring.snapshot_path)
    create_markdown_artifact(key=STATUS_ARTIFACT_KEY, markdown=render_markdown(snapshot),
                             description=f"Platform status at {now:%Y-%m-%d %H:%M:%S} UTC")
    for b in breaches:
        emit_event(
            event=f"{EVENT_PREFIX}.threshold_breached",
            resource={"prefect.resource.id": f"llm-resilience.component.{b.component}",
                      "prefect.resource.name": b.component, "llm-resilience.metric": b.metric},
            payload=b.model_dump(mode="json"),
        )
    for p in prompts:
        for shift in p.shifts:
            emit_event(
                event=f"{EVENT_PREFIX}.prompt_shift",
                resource={"prefect.resource.id": f"llm-resilience.prompt.{p.prompt}", "prefect.resource.name": p.prompt},
                payload={**shift.model_dump(mode="json"), "detail": shift.describe()},
            )
    get_run_logger().info("monitor: %d samples, %d breach(es), %d prompt shift(s)", len(samples), len(breaches),
                          sum(len(p.shifts) for p in prompts))
    return snapshot


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
