"""Prefect tasks of the health monitor beyond the probes: resources, prompts, store, thresholds, summary.

Each is a thin wrapper over the typed logic in its own module (resource_usage, prompt_health,
metrics_store, thresholds, platform_summary, platform_status). Anything the monitor reads only
to enrich its report (events, the prompt registry) is best effort: a failure becomes a note in
the report, never a failed health check.
"""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import LLMEndpoint, MonitoringPolicy, StorageTarget
from tasks.errors import ConfigurationError
from tasks.health_probes import HealthStatus, ProbeResult
from tasks.metrics_store import MetricsStore, hourly_trend
from tasks.platform_status import ComponentRow
from tasks.platform_summary import PlatformSummary, read_summary_events, summarise_events
from tasks.prompt_health import PromptHealth, assess_prompt, probe_component
from tasks.prompt_registry import PromptRegistry
from tasks.resource_usage import ResourceReport, component_for_process, sample_resources
from tasks.retry_policy import network_task_options
from tasks.thresholds import Sample, check_thresholds


def load_policy(name: str) -> MonitoringPolicy:
    """The policy document, validated; a missing or wrong document stops the monitor before any probe."""
    try:
        return MonitoringPolicy.load(name)
    except ValueError as exc:
        raise ConfigurationError(f"monitoring-policy/{name}: {exc}") from exc


def policy_interval_drift(policy: MonitoringPolicy, name: str, interval: timedelta) -> str | None:
    """Why the policy no longer fits the cadence its deployment runs at, or None when it does.
    ``schedule_interval_s`` is what threshold windows were checked against when the block was
    saved; an operator who changes the schedule in the UI changes how many samples each window
    holds, so the windows are checked again against the real cadence."""
    seconds = interval.total_seconds()
    if abs(seconds - policy.schedule_interval_s) < 1:
        return None
    why = (f"monitoring-policy/{name}: schedule_interval_s is {policy.schedule_interval_s:g} s but this deployment "
           f"runs every {seconds:g} s; set it to {seconds:g}")
    try:
        check_thresholds(policy.thresholds, seconds, f"monitoring-policy/{name}")
    except ConfigurationError as exc:
        return f"{why}, and {exc}"
    return why


@task(name="sample-resources", cache_policy=NO_CACHE)
def sample_resources_task(policy: MonitoringPolicy) -> ResourceReport:
    return sample_resources(policy.run_dir)


@task(name="probe-prompt-versions", cache_policy=NO_CACHE, **network_task_options(retries=1))
def probe_prompt_versions(policy: MonitoringPolicy, now: datetime) -> tuple[list[Sample], list[str]]:
    """One request per watched prompt with its production version: latency and error, per version."""
    from tasks.prompt_runner import PromptRunner
    from tasks.prompt_suite import load_suite

    samples: list[Sample] = []
    notes: list[str] = []
    watches = [w for w in policy.prompts if w.suite_path]
    if not watches:
        return samples, notes
    try:
        registry = PromptRegistry.from_target(StorageTarget.load(policy.prompt_registry_block), policy.prompt_registry_prefix)
        endpoint = LLMEndpoint.load(policy.prompt_endpoint_block)
    except (ValueError, httpx.HTTPError) as exc:
        return samples, [f"prompt probes skipped: {exc}"[:300]]
    for watch in watches:
        try:
            version = registry.resolve(f"{watch.name}@production")
            case = load_suite(watch.suite_path).cases[0]
        except Exception as exc:  # noqa: BLE001 - a prompt without production is a note, not a failure
            notes.append(f"prompt {watch.name}: no probe ({exc})"[:300])
            continue
        body = {"model": endpoint.model, "messages": PromptRunner.messages(version, case), **version.params}
        started = time.perf_counter()
        try:
            with endpoint.client() as client:
                ok = client.post("chat/completions", json=body).status_code == 200
        except httpx.HTTPError:
            ok = False
        component = probe_component(watch.name, version.version)
        samples.append(Sample(at=now, component=component, metric="error_rate", value=0.0 if ok else 1.0))
        if ok:
            samples.append(Sample(at=now, component=component, metric="latency_ms",
                                  value=round((time.perf_counter() - started) * 1000, 1)))
    return samples, notes


@task(name="assess-prompts", cache_policy=NO_CACHE, **network_task_options(retries=1))
def assess_prompts(policy: MonitoringPolicy, probes: list[Sample]) -> tuple[list[PromptHealth], list[str]]:
    if not policy.prompts:
        return [], []
    try:
        registry = PromptRegistry.from_target(StorageTarget.load(policy.prompt_registry_block), policy.prompt_registry_prefix)
    except (ValueError, httpx.HTTPError) as exc:
        return [], [f"prompt health skipped: {exc}"[:300]]
    out, notes = [], []
    for watch in policy.prompts:
        try:
            out.append(assess_prompt(
                watch.name, registry.labels(watch.name), registry.audit_log(watch.name),
                registry.run_records(watch.name), probes, error_rate_shift=policy.prompt_error_rate_shift,
                latency_shift_factor=policy.prompt_latency_shift_factor, min_samples=policy.prompt_min_samples,
            ))
        except Exception as exc:  # noqa: BLE001 - the registry may be down; the rest of the report stands
            notes.append(f"prompt {watch.name}: {type(exc).__name__}: {exc}"[:300])
    return out, notes


@task(name="read-platform-summary", cache_policy=NO_CACHE, **network_task_options(retries=1))
def read_platform_summary(now: datetime) -> tuple[PlatformSummary, list[str]]:
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                resp = client.request("POST", "/events/filter", json=body)
                resp.raise_for_status()
                return resp.json()

            return summarise_events(read_summary_events(post, now)), []
    except Exception as exc:  # noqa: BLE001 - an ephemeral server has no events API; say so
        return PlatformSummary(), [f"pipeline summary unavailable: {type(exc).__name__}: {exc}"[:300]]


@task(name="check-notification-target", cache_policy=NO_CACHE)
def check_notification_target(policy: MonitoringPolicy, timeout_s: float = 2.0) -> ProbeResult | None:
    """Can alerts leave the platform? A TCP connect to the webhook, bounded by ``timeout_s``.

    Only a check: notifications are sent by the Prefect server's automation, so an unreachable
    target can never hold up the monitor, but it must not go unnoticed either.
    """
    if not policy.notification_block:
        return None
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    name = policy.notification_block
    try:
        block = CustomWebhookNotificationBlock.load(name)
    except ValueError as exc:
        return ProbeResult(component="notifications", kind="alerts", target=f"custom-webhook/{name}",
                           status=HealthStatus.degraded, detail=f"cannot load notification block custom-webhook/{name}: {exc}"[:500])
    url = httpx.URL(block.url)
    port = url.port or (443 if url.scheme == "https" else 80)
    started = time.perf_counter()
    try:
        with socket.create_connection((url.host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        return ProbeResult(
            component="notifications", kind="alerts", target=str(url), status=HealthStatus.degraded, attempts=1,
            detail=f"notification target of custom-webhook/{name} is unreachable ({url.host}:{port}: "
                   f"{exc.strerror or exc}); failure alerts will not arrive",
        )
    return ProbeResult(component="notifications", kind="alerts", target=str(url), status=HealthStatus.ok, attempts=1,
                       latency_ms=round((time.perf_counter() - started) * 1000, 1),
                       detail=f"custom-webhook/{name} reachable")


# --- pure helpers the flow composes --------------------------------------------------------------


def probe_samples(results: list[ProbeResult], now: datetime) -> list[Sample]:
    out = []
    for r in results:
        if r.status is HealthStatus.down:
            error_rate = 1.0
        else:
            error_rate = (r.metrics.get("failed_attempts", 0) / r.attempts) if r.attempts else 0.0
        out.append(Sample(at=now, component=r.component, metric="error_rate", value=round(error_rate, 4)))
        out.append(Sample(at=now, component=r.component, metric="status", value=r.status.severity))
        if r.latency_ms is not None:
            out.append(Sample(at=now, component=r.component, metric="latency_ms", value=r.latency_ms))
        if isinstance(r.metrics.get("lag_bytes"), (int, float)):
            out.append(Sample(at=now, component=r.component, metric="replication_lag_bytes", value=r.metrics["lag_bytes"]))
    return out


def resource_samples(resources: ResourceReport, now: datetime) -> list[Sample]:
    out = []
    for p in resources.processes:
        out.append(Sample(at=now, component=p.component, metric="cpu_percent", value=p.cpu_percent))
        out.append(Sample(at=now, component=p.component, metric="memory_rss_bytes", value=p.memory_rss_bytes))
    for g in resources.gpus:
        out.append(Sample(at=now, component=f"gpu{g.index}", metric="gpu_utilization_percent", value=g.utilization_percent))
        out.append(Sample(at=now, component=f"gpu{g.index}", metric="gpu_memory_used_bytes", value=g.memory_used_bytes))
    return out


def component_rows(results: list[ProbeResult], resources: ResourceReport, store: MetricsStore,
                   now: datetime, hours: int = 24) -> list[ComponentRow]:
    """One row per probed component, then one per process no probe covers (status from its PID)."""
    history = store.since(now - timedelta(hours=hours), metric="latency_ms")
    by_component: dict[str, list[Sample]] = {}
    for s in history:
        by_component.setdefault(s.component, []).append(s)
    usage = {p.component: p for p in resources.processes}
    rows: list[ComponentRow] = []
    for r in results:
        p = usage.pop(r.component, None)
        failed = r.metrics.get("failed_attempts", 0)
        rows.append(ComponentRow(
            component=r.component, kind=r.kind, status=r.status.value, latency_ms=r.latency_ms,
            error_rate=1.0 if r.status is HealthStatus.down else (failed / r.attempts if r.attempts else 0.0),
            cpu_percent=p.cpu_percent if p else None, memory_rss_bytes=p.memory_rss_bytes if p else None,
            cpu_seconds_total=p.cpu_seconds_total if p else None,
            replication_lag_bytes=r.metrics.get("lag_bytes") if isinstance(r.metrics.get("lag_bytes"), (int, float)) else None,
            trend=hourly_trend(by_component.get(r.component, []), now, hours), detail=r.detail,
        ))
    for p in usage.values():
        rows.append(ComponentRow(component=p.component, kind="process", status="ok", cpu_percent=p.cpu_percent,
                                 memory_rss_bytes=p.memory_rss_bytes, cpu_seconds_total=p.cpu_seconds_total,
                                 detail=f"pid {p.pid} running (no probe)"))
    probed = {r.component for r in results}
    for name in resources.missing:
        if component_for_process(name) in probed:
            continue
        rows.append(ComponentRow(component=name, kind="process", status="down", error_rate=1.0,
                                 detail="its PID file names a process that is gone"))
    return rows
