"""Failover drill: inject a fault under steady chat traffic, measure what users saw, roll it back.

    from flows.failover_drill import failover_drill
    report = failover_drill(experiment_file="deployments/experiments/model-server-crash.yaml")
    plan = failover_drill(experiment_file="...", dry_run=True)   # touches nothing

Publishes the `failover-drill` markdown artifact (figures, SLO verdicts, the timeline PNG),
a link artifact to the JSON journal and PNG in the evidence store, and the event
`llm-resilience.drill.passed` or `.failed`; the run ends Failed when any SLO is breached. A drill
that raises (cancelled, rollback or failback failed) still emits `.failed` with the error and
keeps its partial journal, then the error is raised again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from pydantic import Field

from deployments.settings import PROJECT_ROOT, PlatformSettings, current_platform
from tasks.drill_experiment import DrillPlan, Experiment, load_experiment, plan_experiment
from tasks.drill_journal import DrillJournal, summary_markdown, upload_evidence, write_local
from tasks.drill_runner import DrillRunner, error_text, journal_of, settings_secrets
from tasks.drill_timeline_chart import render_timeline
from tasks.errors import ConfigurationError, NonRetryableError
from tasks.retry_policy import network_task_options
from tasks.strict_input import StrictInput

ARTIFACT_KEY = "failover-drill"
EVENT_PREFIX = "llm-resilience.drill"


class DrillFailed(NonRetryableError):
    """An SLO was breached, the steady state did not hold or return, or an abort condition fired."""


class DrillOptions(StrictInput):
    """Where the drill measures, and where it keeps its evidence."""

    gateway_url: str | None = Field(default=None, description="Gateway to send traffic through; default the platform's.")
    gateway_admin_socket: str | None = Field(
        default=None, description="HAProxy admin socket used to time detection; default the platform's, '' for none.")
    evidence_storage: str = Field(default="region-b", description="StorageTarget block for the journal and chart; '' keeps them local only.")


def resolve_experiment(experiment: Experiment | None, experiment_file: str | None) -> Experiment:
    if (experiment is None) == (experiment_file is None):
        raise ConfigurationError("give exactly one of experiment (inline) or experiment_file")
    if experiment is not None:
        return experiment
    path = Path(experiment_file)  # type: ignore[arg-type]
    return load_experiment(path if path.is_absolute() else PROJECT_ROOT / path)


@task(name="plan-drill")
def plan_drill(settings: PlatformSettings, experiment: Experiment) -> DrillPlan:
    plan, _ = plan_experiment(settings, experiment)
    return plan


@task(name="execute-drill")  # never retried: a second injection is a second experiment
def execute_drill(settings: PlatformSettings, experiment: Experiment, options: DrillOptions, run_name: str) -> DrillJournal:
    runner = DrillRunner(settings, experiment, run_name=run_name, gateway_url=options.gateway_url,
                         gateway_admin_socket=options.gateway_admin_socket)
    return runner.run().journal


@task(name="publish-drill-evidence", **network_task_options(retries=2))
def publish_evidence(settings: PlatformSettings, journal: DrillJournal, evidence_storage: str) -> dict[str, str]:
    m = journal.measurements
    png = (render_timeline([_record(r) for r in journal.requests], journal.marks, m,
                           title=f"{journal.experiment['name']} ({journal.status})")
           if m is not None and journal.marks is not None else None)
    files = write_local(journal, png, settings.state_dir / "drills" / journal.run)
    links = {name: str(path) for name, path in files.items()}
    if evidence_storage:
        from blocks import StorageTarget
        from tasks.s3_location import location_from_target

        try:
            location = location_from_target(StorageTarget.load(evidence_storage), evidence_storage)
            links = upload_evidence(location, files, f"drills/{journal.experiment['name']}/{journal.run}")
        except Exception as exc:  # the local copy stands; say why the remote one is missing
            get_run_logger().warning("evidence not uploaded to %s: %s", evidence_storage, exc)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=summary_markdown(journal, png, links),
                             description=f"Drill {journal.experiment['name']}: {journal.status}")
    for name, url in links.items():
        if url.startswith("http"):
            create_link_artifact(key=f"{ARTIFACT_KEY}-{name}", link=url, link_text=f"drill {name}")
    return links


def emit_drill_event(name: str, journal: DrillJournal | None, links: dict[str, str],
                     error: str | None = None) -> None:
    """`llm-resilience.drill.passed|failed`: the platform summary shows the newest as the last drill,
    so a drill that ended in an error (``error``, secrets masked) must emit `.failed` too."""
    m = journal.measurements if journal is not None else None
    status = journal.status if journal is not None and error is None else "failed"
    payload: dict[str, Any] = {
        "reasons": journal.reasons if journal is not None else [],
        "measurements": m.model_dump(mode="json") if m else None,
        "slo": [v.model_dump(mode="json") for v in journal.slo_verdicts] if journal is not None else [],
        "evidence": links,
    }
    if error is not None:
        payload["error"] = error
    emit_event(event=f"{EVENT_PREFIX}.{status}",
               resource={"prefect.resource.id": f"{EVENT_PREFIX}.{name}", "prefect.resource.name": name},
               payload=payload)


def report_drill_error(settings: PlatformSettings, name: str, evidence_storage: str, exc: Exception) -> None:
    """Keep what evidence the failed drill left (its partial journal), then emit `.failed` with the
    error; a failure to publish is logged, never raised over the drill's own error."""
    journal = journal_of(exc)
    links: dict[str, str] = {}
    try:
        if journal is not None:
            links = publish_evidence(settings, journal, evidence_storage)
    except Exception as publish_error:
        get_run_logger().warning("partial evidence of drill %s not published: %s", name, publish_error)
    finally:
        emit_drill_event(name, journal, links, error=error_text(exc, settings_secrets(settings)))


def _record(data: dict[str, Any]):  # noqa: ANN202
    from tasks.drill_load import TurnRecord

    return TurnRecord(**data)


@flow(name="failover-drill", log_prints=True)
def failover_drill(
    experiment_file: str | None = None,
    experiment: Experiment | None = None,
    dry_run: bool = False,
    options: DrillOptions | None = None,
) -> dict[str, Any]:
    """Run one experiment (a YAML file in the repo, or inline); ``dry_run`` only shows the plan."""
    options = options or DrillOptions()
    logger = get_run_logger()
    settings = current_platform()
    exp = resolve_experiment(experiment, experiment_file)
    plan = plan_drill(settings, exp)
    if dry_run:
        rows = "\n".join(f"| {a.step} | {a.component} | {a.detail} |" for a in plan.actions)
        create_markdown_artifact(key=f"{ARTIFACT_KEY}-plan", description=f"Dry run of {exp.name}",
                                 markdown=f"# Dry run: `{exp.name}`\n\nTouches {plan.touches} (blast radius "
                                          f"{plan.blast_radius}). Nothing was touched.\n\n| step | component | "
                                          f"action |\n|---|---|---|\n{rows}\n")
        logger.info("dry run of %s: would touch %s", exp.name, plan.touches)
        return {"dry_run": True, "plan": plan.model_dump(mode="json")}
    run_name = str(flow_run.get_id() or os.urandom(6).hex())
    try:
        journal = execute_drill(settings, exp, options, run_name)
    except Exception as exc:
        report_drill_error(settings, exp.name, options.evidence_storage, exc)
        raise
    links = publish_evidence(settings, journal, options.evidence_storage)
    emit_drill_event(exp.name, journal, links)
    m = journal.measurements
    summary = {"experiment": exp.name, "status": journal.status, "reasons": journal.reasons,
               "measurements": m.model_dump(mode="json") if m else None, "evidence": links}
    if journal.status != "passed":
        raise DrillFailed(f"drill {exp.name} failed: " + "; ".join(journal.reasons))
    logger.info("drill %s passed: %s", exp.name, m.model_dump_json() if m else "")
    return summary
