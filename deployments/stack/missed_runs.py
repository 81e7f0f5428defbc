"""Scheduled flow runs the platform missed while it was down are cancelled, not all run at once.

Prefect's scheduler creates each deployment's runs ahead of time. While the platform is stopped,
the runs falling due stay Scheduled (shown as Late); a worker started hours later picks every one
of them up at once. On the SQLite server that burst of flow runs locks the database until the API
stops answering (seen on a second `make demo`: `prefect deploy` timed out behind some 30 catch-up
runs of health checks and drills). A run that is more than ``grace_s`` late when the worker starts
is cancelled instead, with a message saying why; the deployment's next scheduled run does the
same work. Runs less late than that still run.

The check itself meets the server at its busiest: just started after hours down, it marks every
missed run Late and schedules the deployments anew, and on SQLite a 30 s query can time out
behind that (seen: `schedule_deployments` took 61 s). A busy or unreachable server is asked again
until ``deadline_s``; if it never answers, the first worker is not started, since starting it
would bring back the burst this check exists to prevent (seen: the check timed out, the worker
took some 30 missed runs at once and the API stopped answering).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from deployments.stack.errors import StackError

__all__ = ["MISSED_MESSAGE", "MissedRunsUnchecked", "cancel_missed_runs", "cancel_missed_runs_patiently", "missed"]

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


class MissedRunsUnchecked(StackError):
    """The server never said which runs were missed, so the first worker was not started."""


def _busy(exc: httpx.HTTPError) -> bool:
    """Worth asking again: no answer in time, no connection, or the server's own failure (a
    locked SQLite database comes back as a 500)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


def cancel_missed_runs_patiently(api_url: str, grace_s: float, work_pool: str, *, deadline_s: float = 300.0,
                                 progress: Callable[[str], None] = lambda _msg: None, timeout_s: float = 30.0,
                                 sleep: Callable[[float], None] = time.sleep,
                                 clock: Callable[[], float] = time.monotonic) -> int:
    """`cancel_missed_runs`, asked again while the server is busy, for up to ``deadline_s``;
    raises `MissedRunsUnchecked` (naming the last error) if it never answers or refuses."""
    deadline = clock() + deadline_s
    delay = 2.0
    while True:
        try:
            return cancel_missed_runs(api_url, grace_s, work_pool, progress=progress, timeout_s=timeout_s)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if not _busy(exc) or clock() + delay > deadline:
                why = "it refused the query" if not _busy(exc) else f"it was still busy after {deadline_s:g} s"
                raise MissedRunsUnchecked(
                    f"could not find the scheduled runs of work pool {work_pool} missed while the platform was "
                    f"down: the Prefect server at {api_url} did not answer ({why}; last error: {error}). The "
                    "worker was not started: it would take every missed run at once. Run `make stack-up` again "
                    "once the server answers (its log: prefect-server.log)."
                ) from exc
            progress(f"the Prefect server is busy ({error}); asking again in {delay:g} s which scheduled runs "
                     "were missed while the platform was down")
            sleep(delay)
            delay = min(delay * 2, 30.0)
