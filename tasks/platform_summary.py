"""The last backup, replication lag and last drill, read back from the events the pipelines emit.

Every pipeline already announces its outcome as a Prefect event (`llm-resilience.backup.*`,
`llm-resilience.replication.lag`, `llm-resilience.drill.passed|failed`), so the monitor reads
those instead of reaching into each pipeline's storage: a pipeline that never ran shows as
"never", and nothing here depends on how a pipeline keeps its data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, Field

SUMMARY_EVENT_PREFIXES = ["llm-resilience.backup.", "llm-resilience.replication.lag", "llm-resilience.drill."]


class BackupSummary(BaseModel):
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    figures: dict[str, Any] = Field(default_factory=dict)


class ReplicationSummary(BaseModel):
    link: str
    at: datetime
    lag_s: float | None = None
    pending_objects: int | None = None
    pending_bytes: int | None = None


class DrillSummary(BaseModel):
    at: datetime
    passed: bool
    name: str = ""
    figures: dict[str, float] = Field(default_factory=dict)


class PlatformSummary(BaseModel):
    backup: BackupSummary = Field(default_factory=BackupSummary)
    replication: list[ReplicationSummary] = Field(default_factory=list)
    drill: DrillSummary | None = None
    detail: str = ""


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred"].replace("Z", "+00:00"))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def drill_figures(payload: dict[str, Any]) -> dict[str, float]:
    """Numbers of a drill event: its `measurements` (detect_ms, failover_ms, failed ...) and per-phase
    latencies flattened (`fault_p99_ms`), plus any number at the top level."""
    measurements = payload.get("measurements") or {}
    figures = {k: n for k, v in {**payload, **measurements}.items() if (n := _number(v)) is not None}
    for phase, values in (measurements.get("phases") or {}).items():
        for key, value in (values or {}).items():
            if (n := _number(value)) is not None:
                figures[f"{phase}_{key}"] = n
    return figures


def summarise_events(events: list[dict[str, Any]]) -> PlatformSummary:
    """``events`` newest first (the events API's default order)."""
    summary = PlatformSummary()
    seen_links: set[str] = set()
    for event in events:
        name, payload = event["event"], event.get("payload") or {}
        if name.startswith("llm-resilience.backup.") and payload.get("operation") == "backup":
            if name.endswith(".completed") and summary.backup.last_success_at is None:
                summary.backup.last_success_at = _at(event)
                summary.backup.figures = {k: v for k, v in payload.items() if _number(v) is not None}
            elif name.endswith(".failed") and summary.backup.last_failure_at is None:
                summary.backup.last_failure_at = _at(event)
                summary.backup.last_error = str(payload.get("error", ""))[:300]
        elif name == "llm-resilience.replication.lag":
            link = event["resource"].get("prefect.resource.name") or event["resource"]["prefect.resource.id"]
            if link in seen_links:
                continue
            seen_links.add(link)
            lag = _number(payload.get("current_lag_s"))
            if lag is None:
                lag = _number(payload.get("max_s"))
            summary.replication.append(ReplicationSummary(
                link=link, at=_at(event), lag_s=lag if lag is not None else 0.0,
                pending_objects=payload.get("pending_objects"), pending_bytes=payload.get("pending_bytes"),
            ))
        elif name in {"llm-resilience.drill.passed", "llm-resilience.drill.failed"} and summary.drill is None:
            figures = drill_figures(payload)
            summary.drill = DrillSummary(at=_at(event), passed=name.endswith(".passed"), figures=figures,
                                         name=event["resource"].get("prefect.resource.name", ""))
    return summary


Post = Callable[[str, dict[str, Any]], dict[str, Any]]


def read_summary_events(post: Post, now: datetime, days: float = 30, limit: int = 50) -> list[dict[str, Any]]:
    """Newest summary events of the last ``days`` days through ``post(path, json)`` (the events API).

    One query per kind (the API caps a page at 50), so frequent lag events never crowd out the
    last backup; merged newest first.
    """
    since = (now - timedelta(days=days)).astimezone(timezone.utc).isoformat()
    events: list[dict[str, Any]] = []
    for prefix in SUMMARY_EVENT_PREFIXES:
        body = {"filter": {"occurred": {"since": since}, "event": {"prefix": [prefix]}}, "limit": limit}
        events += post("/events/filter", body).get("events", [])
    return sorted(events, key=lambda e: e["occurred"], reverse=True)
