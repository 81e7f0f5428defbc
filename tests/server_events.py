"""Read events back from the test platform's Prefect server (events arrive asynchronously)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import httpx

from deployments.settings import PlatformSettings


def wait_for_events(
    settings: PlatformSettings, *, event: str, resource_id: str, since: float, timeout_s: float = 30.0
) -> list[dict]:
    """Events named ``event`` about ``resource_id`` since ``since`` (Unix time); [] if none came in time."""
    body = {
        "filter": {
            "occurred": {"since": datetime.fromtimestamp(since, timezone.utc).isoformat()},
            "event": {"name": [event]},
            "resource": {"id": [resource_id]},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + timeout_s
    while True:
        resp = httpx.post(f"{settings.prefect_api_url}/events/filter", json=body, timeout=10)
        resp.raise_for_status()
        found = resp.json()["events"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
