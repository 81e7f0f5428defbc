"""Scheduled flow runs the platform missed while it was down are cancelled, not all run at once.

Prefect's scheduler creates each deployment's runs ahead of time. While the platform is stopped,
the runs falling due stay Scheduled (shown as Late); a worker started hours later picks every one
of them up at once. On the SQLite server that burst of flow runs locks the database until the API
stops answering (seen on a second `make demo`: `prefect deploy` timed out behind some 30 catch-up
runs of health checks and drills). A run that is more than ``grace_s`` late when the worker starts
is cancelled instead, with a message saying why; the deployment's next scheduled run does the
same work. Runs less late than that still run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import httpx

__all__ = ["MISSED_MESSAGE", "cancel_missed_runs", "missed"]

MISSED_MESSAGE = "missed: due at {due} UTC while the platform was down; the deployment's next scheduled run does its work"
PAGE = 200


def missed(runs: list[dict[str, Any]], now: dt.datetime, grace_s: float) -> list[dict[str, Any]]:
    """The Scheduled runs of ``runs`` (flow-run JSON as the API returns it) due more than
    ``grace_s`` before ``now``."""
    cutoff = now - dt.timedelta(seconds=grace_s)
    return [
        run for run in runs
        if (run.get("state") or {}).get("type") == "SCHEDULED" and _due(run) is not None and _due(run) < cutoff
    ]


def _due(run: dict[str, Any]) -> dt.datetime | None:
    when = run.get("next_scheduled_start_time") or run.get("expected_start_time")
    return dt.datetime.fromisoformat(when) if when else None


def _scheduled_before(client: httpx.Client, cutoff: dt.datetime, work_pool: str) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        response = client.post("/flow_runs/filter", json={
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}, "expected_start_time": {"before_": cutoff.isoformat()}},
            "work_pools": {"name": {"any_": [work_pool]}},
            "sort": "EXPECTED_START_TIME_ASC", "limit": PAGE, "offset": offset,
        })
        response.raise_for_status()
        page = response.json()
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE


def cancel_missed_runs(api_url: str, grace_s: float, work_pool: str, *, now: dt.datetime | None = None,
                       progress: Callable[[str], None] = lambda _msg: None, timeout_s: float = 30.0) -> int:
    """Cancel every Scheduled run of ``work_pool`` (the pool the starting worker serves; other
    pools' runs are not ours to judge) due more than ``grace_s`` ago; returns how many."""
    now = now or dt.datetime.now(dt.UTC)
    with httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout_s) as client:
        stale = missed(list(_scheduled_before(client, now - dt.timedelta(seconds=grace_s), work_pool)), now, grace_s)
        for run in stale:
            due = _due(run)
            response = client.post(f"/flow_runs/{run['id']}/set_state", json={
                "state": {"type": "CANCELLED", "name": "Cancelled",
                          "message": MISSED_MESSAGE.format(due=f"{due:%Y-%m-%d %H:%M}" if due else "?")},
                "force": True,
            })
            response.raise_for_status()
    if stale:
        oldest = min(d for d in (_due(r) for r in stale) if d is not None)
        progress(f"cancelled {len(stale)} scheduled flow run(s) of work pool {work_pool} missed while the platform was down "
                 f"(the oldest due {oldest:%Y-%m-%d %H:%M} UTC); each deployment's next scheduled run goes ahead")
    return len(stale)
