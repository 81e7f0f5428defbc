"""Prefect tasks that probe one component each; loading the block is part of the probe."""

from __future__ import annotations

import httpx
import redis
from prefect import task

from blocks import LLMEndpoint, SessionStore, StorageTarget
from tasks.health_probes import (
    HealthStatus,
    ProbePolicy,
    ProbeResult,
    llm_completion,
    prefect_api,
    redis_replication,
    run_probe,
    storage_round_trip,
)
from tasks.health_report import component_name
from tasks.redis_retry import bounded_retry
from tasks.retry_policy import network_task_options


def _block_missing(component: str, kind: str, block_type: str, name: str, exc: Exception) -> ProbeResult:
    return ProbeResult(
        component=component, kind=kind, target=f"{block_type}/{name}", status=HealthStatus.down,
        detail=f"cannot load block {block_type}/{name}: {exc}".strip()[:500],
    )


@task(name="probe-storage", **network_task_options(retries=1))
def probe_storage(block_name: str, policy: ProbePolicy) -> ProbeResult:
    component = component_name("storage", block_name)
    try:
        target = StorageTarget.load(block_name)
    except (ValueError, httpx.HTTPError) as exc:
        return _block_missing(component, "storage", "storage-target", block_name, exc)
    fs = target.filesystem()
    return run_probe(component, "storage", target.url, lambda: storage_round_trip(fs, target.root), policy)


@task(name="probe-llm-endpoint", **network_task_options(retries=1))
def probe_llm_endpoint(block_name: str, policy: ProbePolicy, kind: str = "llm") -> ProbeResult:
    component = component_name(kind, block_name)
    try:
        endpoint = LLMEndpoint.load(block_name)
    except (ValueError, httpx.HTTPError) as exc:
        return _block_missing(component, kind, "llm-endpoint", block_name, exc)

    def check():  # noqa: ANN202
        with endpoint.client() as client:
            return llm_completion(client, endpoint.model, list_models=kind != "gateway")

    return run_probe(component, kind, endpoint.base_url, check, policy)


def primary_client(store: SessionStore, host: str, port: int) -> redis.Redis:
    """The primary a replica names, reached with the replica's block credentials and timeouts."""
    return redis.Redis(
        host=host, port=port, username=store.username,
        password=store.password.get_secret_value() if store.password else None,
        socket_timeout=store.socket_timeout_s, socket_connect_timeout=store.socket_timeout_s,
        decode_responses=True, retry=bounded_retry(),
    )


@task(name="probe-session-store", **network_task_options(retries=1))
def probe_session_store(block_name: str, policy: ProbePolicy) -> ProbeResult:
    component = component_name("sessions", block_name)
    try:
        store = SessionStore.load(block_name)
    except (ValueError, httpx.HTTPError) as exc:
        return _block_missing(component, "sessions", "session-store", block_name, exc)

    def check():  # noqa: ANN202
        with store.client() as client:
            return redis_replication(client, policy, lambda host, port: primary_client(store, host, port))

    return run_probe(component, "sessions", store.url, check, policy)


@task(name="probe-prefect-api", **network_task_options(retries=1))
def probe_prefect_api(api_url: str | None, policy: ProbePolicy) -> ProbeResult:
    if not api_url:
        return ProbeResult(
            component="prefect-api", kind="prefect", target="(ephemeral)", status=HealthStatus.ok,
            detail="no PREFECT_API_URL: running against an in-process ephemeral server",
        )

    def check():  # noqa: ANN202
        with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=policy.timeout_s) as client:
            return prefect_api(client)

    return run_probe("prefect-api", "prefect", api_url, check, policy)
