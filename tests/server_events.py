"""Read events (which arrive asynchronously) and run states back from the test platform's Prefect server."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State

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


def server_copy(state: State) -> State:
    """The server's copy of a flow run's current state: what the client is handed when its final
    state was already recorded, e.g. when a proposal answered after the client's timeout is retried."""
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(state.state_details.flow_run_id).state
    assert stored is not None and stored.type == state.type, (stored, state)
    return stored
