"""What a health probe checks, for each kind of component; no Prefect here.

A probe tries a check up to ``attempts`` times, each bounded by ``timeout_s``, with jittered
backoff between tries. A component that stays broken is a finding (``down``), never an
exception: the report must cover every component, however many are down.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import httpx
from pydantic import BaseModel, Field

from tasks.errors import ProbeFailed
from tasks.retry_policy import backoff_delays
from tasks.strict_input import StrictInput


class HealthStatus(str, Enum):
    ok = "ok"
    degraded = "degraded"
    down = "down"

    @property
    def severity(self) -> int:
        return {"ok": 0, "degraded": 1, "down": 2}[self.value]


class ProbePolicy(StrictInput):
    """How hard to try before calling a component down, and when slow counts as degraded."""

    timeout_s: float = Field(default=10.0, gt=0, description="Limit for one attempt.")
    attempts: int = Field(default=2, ge=1, le=10, description="Tries before a component is down.")
    backoff_s: float = Field(default=0.5, ge=0, description="First delay between tries (doubles, jittered).")
    degraded_latency_ms: float = Field(default=3000.0, gt=0, description="Slower than this is degraded.")
    max_replication_lag_bytes: int = Field(default=1_048_576, ge=0, description="Replica lag above this is degraded.")
    one_session_primary: bool = Field(
        default=True, description="The session stores form one replication group: more than one primary is a "
                                  "split brain (degraded). Off for stores that are independent by design.")


class ProbeResult(BaseModel):
    component: str
    kind: str
    target: str
    status: HealthStatus
    latency_ms: float | None = None
    attempts: int = 0
    detail: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)


@dataclass
class CheckOutcome:
    """What one successful check saw; ``degraded`` says why it is not fully healthy."""

    detail: str
    degraded: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def run_probe(
    component: str, kind: str, target: str, check: Callable[[], CheckOutcome], policy: ProbePolicy
) -> ProbeResult:
    delays = backoff_delays(policy.attempts, base_s=policy.backoff_s)
    errors: list[str] = []
    for attempt in range(1, policy.attempts + 1):
        started = time.perf_counter()
        try:
            outcome = _with_timeout(check, policy.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure of the component is a finding
            errors.append(_describe(exc))
            if attempt < policy.attempts:
                time.sleep(delays[attempt - 1])
            continue
        latency_ms = (time.perf_counter() - started) * 1000
        status = HealthStatus.ok
        detail = outcome.detail
        if outcome.degraded:
            status, detail = HealthStatus.degraded, outcome.degraded
        elif latency_ms > policy.degraded_latency_ms:
            status = HealthStatus.degraded
            detail = f"slow: {latency_ms:.0f} ms > {policy.degraded_latency_ms:.0f} ms ({outcome.detail})"
        if errors:
            outcome.metrics["failed_attempts"] = len(errors)
        return ProbeResult(
            component=component, kind=kind, target=target, status=status,
            latency_ms=round(latency_ms, 1), attempts=attempt, detail=detail, metrics=outcome.metrics,
        )
    return ProbeResult(
        component=component, kind=kind, target=target, status=HealthStatus.down,
        attempts=policy.attempts, detail=errors[-1] if errors else "no attempt made",
    )


def _with_timeout(check: Callable[[], CheckOutcome], timeout_s: float) -> CheckOutcome:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe")
    try:
        return pool.submit(check).result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise ProbeFailed(f"no answer within {timeout_s:g} s") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ProbeFailed):
        return str(exc)
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:500]


# --- the checks, one per kind of component -------------------------------------------------------


def storage_round_trip(fs: Any, root: str) -> CheckOutcome:
    """Put, read back and delete a small object under the root; the bytes must match."""
    key = f"{root.rstrip('/')}/.llm-resilience/health/{uuid.uuid4().hex}"
    payload = os.urandom(4096)
    fs.pipe_file(key, payload)
    try:
        got = fs.cat_file(key)
    finally:
        fs.rm_file(key)
    if hashlib.sha256(got).digest() != hashlib.sha256(payload).digest():
        raise ProbeFailed(f"read back {len(got)} bytes from {key} that differ from the {len(payload)} written")
    return CheckOutcome(detail="put/get/delete round trip", metrics={"bytes": len(payload)})


def llm_completion(client: httpx.Client, model: str, *, list_models: bool = True) -> CheckOutcome:
    """``GET /models`` (the model must be served) and a four-token chat completion."""
    metrics: dict[str, Any] = {}
    degraded = None
    if list_models:
        resp = client.get("models")
        _expect_ok(resp, "GET /models")
        served = [m.get("id") for m in resp.json().get("data", [])]
        if model not in served:
            degraded = f"model {model!r} not served; the endpoint serves {served}"
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Reply with the single word OK."}],
        "max_tokens": 4,
        "temperature": 0,
    }
    resp = client.post("chat/completions", json=body)
    _expect_ok(resp, "POST /chat/completions")
    data = resp.json()
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ProbeFailed(f"POST /chat/completions answered without choices[0].message: {str(data)[:200]}") from None
    detail = f"completion {content.strip()[:40]!r}"
    served_by = resp.headers.get("x-llmr-backend")
    if served_by:
        metrics["served_by"] = served_by
        detail += f" served by {served_by}"
    metrics["completion_tokens"] = (data.get("usage") or {}).get("completion_tokens")
    return CheckOutcome(detail=detail, degraded=degraded, metrics=metrics)


def _expect_ok(resp: httpx.Response, what: str) -> None:
    if resp.status_code != 200:
        raise ProbeFailed(f"{what} answered HTTP {resp.status_code}: {resp.text[:200]}")


def flag_split_brain(results: list[ProbeResult], policy: ProbePolicy) -> list[ProbeResult]:
    """Each store's probe sees only itself, so two primaries (a failover whose old primary came
    back still a primary) both look healthy: writes then diverge, and the next failover loses
    one side's. Marks every primary session store degraded when more than one answers as primary."""
    primaries = [r for r in results if r.kind == "sessions" and r.status is not HealthStatus.down
                 and r.metrics.get("role") == "primary"]
    if not policy.one_session_primary or len(primaries) < 2:
        return results
    names = ", ".join(r.component for r in primaries)
    why = f"split brain: {len(primaries)} session stores are primary ({names}); one must follow the other"
    flagged = {id(r) for r in primaries}
    return [r.model_copy(update={"status": HealthStatus.degraded, "detail": f"{r.detail}; {why}"[:500]})
            if id(r) in flagged else r for r in results]


def redis_replication(client: Any, policy: ProbePolicy, connect_master: Callable[[str, int], Any]) -> CheckOutcome:
    """PING, then the replication role; a replica reports its link and how many bytes it lags."""
    if not client.ping():
        raise ProbeFailed("PING did not answer PONG")
    info = client.info("replication")
    role = info.get("role")
    if role == "master":
        return CheckOutcome(
            detail=f"primary, {info.get('connected_slaves', 0)} replica(s)",
            metrics={"role": "primary", "replicas": info.get("connected_slaves", 0),
                     "repl_offset": info.get("master_repl_offset")},
        )
    host, port = info.get("master_host"), int(info.get("master_port", 0))
    metrics: dict[str, Any] = {"role": "replica", "primary": f"{host}:{port}", "link": info.get("master_link_status")}
    if info.get("master_link_status") != "up":
        metrics["link_down_s"] = info.get("master_link_down_since_seconds")
        return CheckOutcome(
            detail="replica", degraded=f"replication link to {host}:{port} is down", metrics=metrics
        )
    replica_offset = int(info.get("slave_repl_offset", 0))
    try:
        primary_offset = int(connect_master(host, port).info("replication").get("master_repl_offset", 0))
    except Exception as exc:  # noqa: BLE001 - the primary's own probe reports why
        metrics["lag_bytes"] = None
        return CheckOutcome(detail=f"replica; primary offset unknown ({_describe(exc)})", metrics=metrics)
    lag = max(primary_offset - replica_offset, 0)
    metrics["lag_bytes"] = lag
    if lag > policy.max_replication_lag_bytes:
        return CheckOutcome(
            detail="replica", degraded=f"replica lags {lag} bytes > {policy.max_replication_lag_bytes}", metrics=metrics
        )
    return CheckOutcome(detail=f"replica of {host}:{port}, lag {lag} bytes", metrics=metrics)


def prefect_api(client: httpx.Client) -> CheckOutcome:
    resp = client.get("health")
    _expect_ok(resp, "GET /health")
    return CheckOutcome(detail="API answers /health")
