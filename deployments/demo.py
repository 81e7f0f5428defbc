"""`make demo`: run the health-check deployment once through the worker and show what it found.

The platform is already up and deployed (the Makefile does that first); this asks the server
to run the deployment, waits for the worker to finish it, and prints the `health-report`
table artifact and where the UI is.
"""

from __future__ import annotations

import json
import os
import sys

from deployments.settings import load_settings

DEPLOYMENT = "health-check/health-check"


def main() -> int:
    settings = load_settings()
    os.environ.update(settings.prefect_env())

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.deployments import run_deployment

    from flows.health import REPORT_ARTIFACT_KEY
    from tasks.health_report import render_text_table

    print(f"running deployment {DEPLOYMENT} through worker pool {settings.work_pool} ...", flush=True)
    run = run_deployment(DEPLOYMENT, timeout=600, poll_interval=1, as_subflow=False)
    state = run.state
    print(f"flow run {run.name} ({run.id}): {state.name if state else 'unknown'}")

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[REPORT_ARTIFACT_KEY]), flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])
            ),
            limit=1,
        )
    if not artifacts:
        print(f"no {REPORT_ARTIFACT_KEY!r} artifact from that run", file=sys.stderr)
        return 1
    table = artifacts[0]
    rows = table.data if isinstance(table.data, list) else json.loads(table.data)
    print(table.description or "")
    print(render_text_table(rows, ["component", "status", "latency_ms", "target", "detail"]))
    print(f"\nPrefect UI: {settings.prefect_ui_url}")
    print(f"This run:   {settings.prefect_ui_url}/runs/flow-run/{run.id}  (artifact `platform-status`)")
    print(f"Prometheus: {settings.metrics_url}   alert inbox: {settings.notification_inbox_url}")
    print("The platform keeps running; `make stack-down` stops it.")
    return 0 if state is not None and state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
