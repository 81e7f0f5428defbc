"""Controlled regional failover to region-b, and failback to region-a in verified steps.

    from flows.regional_failover import regional_failover, failback
    regional_failover()                                  # traffic + sessions on region-b
    failback(policy=FailbackPolicy(steps_percent=[10, 50, 100], hold_s=5))

Each run publishes a `regional-failover` / `failback` table artifact of its steps (with the
probe figures of each) and the event `llm-resilience.failover.completed|aborted`.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event

from pydantic import Field

from deployments.settings import current_platform
from tasks.errors import LLMResilienceError
from tasks.regional_failover import FailbackPolicy, RegionalControl, StepLog

EVENT_PREFIX = "llm-resilience.failover"


def _publish(kind: str, log: StepLog, outcome: str, reason: str = "") -> None:
    rows = [{k: (str(v) if isinstance(v, dict) else v) for k, v in e.items()} for e in log.entries]
    create_table_artifact(key=kind, table=rows, description=f"{kind}: {outcome}{' - ' + reason if reason else ''}")
    emit_event(event=f"{EVENT_PREFIX}.{outcome}", resource={"prefect.resource.id": f"llm-resilience.{kind}"},
               payload={"steps": log.entries, "reason": reason})


def _reason(exc: Exception) -> str:
    """Our errors say what went wrong in words; anything else also needs its type to be read."""
    return str(exc) if isinstance(exc, LLMResilienceError) else f"{type(exc).__name__}: {exc}"


@flow(name="regional-failover", log_prints=True)
def regional_failover(verify_requests: Annotated[int, Field(ge=1, le=1000)] = 8) -> list[dict]:
    """Gateway traffic to region-b, region-b's session store promoted, verified by probes."""
    log = StepLog()
    try:
        # Not a retried task: repeating a half-done failover blindly is worse than reporting it.
        RegionalControl(current_platform()).fail_over(verify_requests=verify_requests, log=log)
    except Exception as exc:  # a raw Redis/HTTP error half-way is as much an abort as our own errors
        _publish("regional-failover", log, "aborted", _reason(exc))
        raise
    _publish("regional-failover", log, "completed")
    get_run_logger().info("traffic and sessions on region-b: %s", log.entries[-1])
    return log.entries


@flow(name="failback", log_prints=True)
def failback(policy: FailbackPolicy | None = None) -> list[dict]:
    """Region-a re-synced from region-b, then traffic returned in steps while probes stay healthy."""
    control = RegionalControl(current_platform())
    log = StepLog()
    try:
        control.fail_back(policy or FailbackPolicy(), log)
    except Exception as exc:
        _publish("failback", log, "aborted", _reason(exc))
        raise
    _publish("failback", log, "completed")
    return log.entries
