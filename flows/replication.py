"""Cross-region replication (DESIGN.md §4.2): make each destination a verified copy of the source.

    from flows.replication import replicate, ReplicationParams
    report = replicate(ReplicationParams(source="region-a", destinations=["region-b"]))

Plan (diff both listings on size + checksum) -> guard deletes -> copy in batches (many objects per
task run, bounded adaptive concurrency, large objects streamed in resumable parts, every object
verified end to end) -> delete or quarantine what the source no longer has (only after complete
listings) -> publish figures (`replication-report` table, `llm-resilience.replication.*` events).
``replication_status`` reports lag and pending figures without copying anything.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.events import emit_event
from pydantic import BaseModel, Field, field_validator, model_validator

from tasks.errors import LLMResilienceError
from tasks.replication import (
    copy_batch,
    delete_batch,
    list_objects_task,
    read_metadata_task,
    resolve_targets,
)
from tasks.replication_copy import MIB, CopySettings
from tasks.replication_plan import Listing, Plan, batches, check_delete_guard, plan_replication
from tasks.replication_progress import CopyProgress, show_progress
from tasks.replication_report import DestinationReport, FailedObject, LagFigures, ReplicationReport
from tasks.s3_location import S3Location
from tasks.strict_input import StrictInput
from tasks.task_runners import TaskRunnerSettings, check_task_runner, iter_batches, use_task_runner

REPORT_ARTIFACT_KEY = "replication-report"
PROGRESS_ARTIFACT_KEY = "replication-progress"
FAILURES_ARTIFACT_KEY = "replication-failures"
FAILURES_ARTIFACT_ROWS = 1000  # a table the UI can still show; the returned report keeps every failure
STATUS_ARTIFACT_KEY = "replication-status"
EVENT_PREFIX = "llm-resilience.replication"


def default_resume_dir() -> str:
    state = os.environ.get("LLMR_STATE_DIR") or str(Path(__file__).resolve().parents[1] / ".state")
    return str(Path(state) / "replication" / "uploads")


# The platform writes these only to region-b (flows/backup.py's repository, flows/failover_drill.py's
# evidence): a replication from region-a with deletes must never quarantine them.
DESTINATION_ONLY_PREFIXES = ("backups/", "drills/")


class ReplicationParams(StrictInput):
    """What to replicate where, and how carefully. Defaults: region-a bucket -> region-b bucket."""

    source: str = Field(default="region-a", description="StorageTarget block to copy from.")
    destinations: list[str] = Field(default=["region-b"], description="StorageTarget blocks to copy to.")
    prefix: str = Field(default="", description="Only objects below this prefix (relative to each target's root).")
    delete: bool = Field(default=True, description="Delete destination objects the source no longer has.")
    exclude_prefixes: list[str] = Field(
        default_factory=lambda: list(DESTINATION_ONLY_PREFIXES),
        description="Keys below these prefixes (relative to `prefix`) are neither copied nor deleted, on either side. "
                    "Default: what the platform keeps only in region-b (the backup repository, drill evidence).",
    )
    max_delete_count: int = Field(default=1000, ge=0, description="Stop before deleting more objects than this.")
    max_delete_fraction: float = Field(default=0.5, ge=0, le=1, description="Stop before deleting more than this share of the destination.")
    quarantine_prefix: str | None = Field(
        default=".llmr-quarantine", description="Move deleted objects under this bucket prefix instead of dropping them (empty: plain delete)."
    )
    quarantine_days: int = Field(default=7, ge=0, description="Days a quarantined object is kept.")
    concurrency: int = Field(default=16, ge=1, le=256, description="Objects in flight at once (backs off under throttling).")
    large_concurrency: int = Field(default=8, ge=1, le=64, description="Objects above 4 MiB streamed at once (multipart part buffers share buffer_mib).")
    part_concurrency: int = Field(default=4, ge=1, le=64, description="Parts of one large object uploading at once.")
    multipart_threshold_mib: int = Field(default=200, ge=5, description="Objects larger than this are copied in parts (resumable); smaller ones above 4 MiB stream through one PUT.")
    buffer_mib: int = Field(default=64, ge=5, le=4096, description="Multipart part buffers alive at once, all large objects together (the memory bound).")
    part_size_mib: int = Field(default=8, ge=5, le=5120, description="Part size for large objects.")
    list_page_size: int = Field(default=1000, ge=1, le=1000, description="Keys per listing request.")
    batch_objects: int = Field(default=1000, ge=1, description="Objects per copy task run.")
    batch_mib: int = Field(default=4096, ge=1, description="Bytes per copy task run.")
    verify_readback: bool = Field(default=False, description="Also read every copied object back and compare SHA-256.")
    max_request_attempts: int = Field(default=8, ge=1, le=20, description="Attempts per S3 request (backoff + jitter).")
    abort_after_refusals: int = Field(
        default=20, ge=0, description="Stop copying to a destination once this many objects in a row were refused "
        "(AccessDenied, NoSuchBucket, a revoked key ...); the rest count as pending, deletes are skipped. 0: never stop.",
    )
    resume_dir: str = Field(default_factory=default_resume_dir, description="Where multipart copies record completed parts.")
    fail_on_errors: bool = Field(default=True, description="End the run Failed when an object failed or deletes were blocked.")
    task_runner: TaskRunnerSettings = Field(
        default_factory=TaskRunnerSettings, description="Where copy batches run: in the flow process, or on a Dask cluster."
    )

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise ValueError(f"prefix {value!r}: '..' is not allowed")
        return value.strip("/")

    @field_validator("exclude_prefixes")
    @classmethod
    def _clean_excludes(cls, value: list[str]) -> list[str]:
        return clean_exclude_prefixes(value)

    @field_validator("quarantine_prefix")
    @classmethod
    def _clean_quarantine(cls, value: str | None) -> str | None:
        if value and ".." in value.split("/"):
            raise ValueError(f"quarantine_prefix {value!r}: '..' is not allowed")
        return value.strip("/") or None if value else None

    @model_validator(mode="after")
    def _source_not_a_destination(self) -> ReplicationParams:
        if self.source in self.destinations:
            raise ValueError(f"destinations: {self.source!r} is also the source")
        return self

    def copy_settings(self) -> CopySettings:
        return CopySettings(
            multipart_threshold=self.multipart_threshold_mib * MIB, part_size=self.part_size_mib * MIB,
            concurrency=self.concurrency, large_concurrency=self.large_concurrency, part_concurrency=self.part_concurrency,
            buffer_bytes=self.buffer_mib * MIB, verify_readback=self.verify_readback, max_request_attempts=self.max_request_attempts,
            abort_after_refusals=self.abort_after_refusals,
            resume_dir=Path(self.resume_dir),
        )


class ReplicationIncomplete(LLMResilienceError):
    """Some objects were not replicated, or deletes were blocked; ``report`` says which."""

    def __init__(self, message: str, report: ReplicationReport) -> None:
        super().__init__(message)
        self.report = report


def clean_exclude_prefixes(value: list[str]) -> list[str]:
    """Each as ``dir/`` relative to the replicated prefix; an empty one would exclude everything."""
    out = []
    for i, raw in enumerate(value):
        cleaned = raw.strip().strip("/")
        if not cleaned:
            raise ValueError(f"exclude_prefixes[{i}]: an empty prefix would exclude every object")
        if ".." in cleaned.split("/"):
            raise ValueError(f"exclude_prefixes[{i}]: {raw!r}: '..' is not allowed")
        out.append(cleaned + "/")
    return out


def _exclusions(params: ReplicationParams, location: S3Location) -> tuple[str, ...]:
    """Full-key prefixes the listings skip: the quarantine (at the bucket root) and the user's exclusions."""
    quarantine = (params.quarantine_prefix + "/",) if params.quarantine_prefix else ()
    return quarantine + tuple(location.full_key(p) for p in params.exclude_prefixes)


def plan_destination(params: ReplicationParams, source: S3Location, destination: S3Location) -> tuple[Plan, Listing, Listing]:
    src_f = list_objects_task.submit(source, _exclusions(params, source), params.list_page_size)
    dst_f = list_objects_task.submit(destination, _exclusions(params, destination), params.list_page_size)
    src_listing, dst_listing = src_f.result(), dst_f.result()
    plan = plan_replication(src_listing, dst_listing, delete=params.delete)
    if plan.needs_metadata:
        metadata = read_metadata_task(destination, plan.needs_metadata, params.concurrency)
        plan = plan_replication(src_listing, dst_listing, delete=params.delete, destination_metadata=metadata)
    return plan, src_listing, dst_listing


@flow(name="replicate", log_prints=True)
def replicate(params: ReplicationParams | None = None) -> ReplicationReport:
    params = params or ReplicationParams()
    check_task_runner(params.task_runner)  # an unreachable Dask scheduler stops the run before any work
    source, destinations = resolve_targets(params.source, params.destinations, params.prefix, params.quarantine_prefix)
    report = ReplicationReport(started_at=dt.datetime.now(dt.UTC))

    # Plan every destination and check every delete guard before anything is written.
    plans = []
    for destination in destinations:
        plan, src_listing, dst_listing = plan_destination(params, source, destination)
        check_delete_guard(plan, len(dst_listing.objects), max_count=params.max_delete_count, max_fraction=params.max_delete_fraction)
        plans.append((destination, plan, src_listing, dst_listing))

    settings = params.copy_settings()
    with use_task_runner(params.task_runner) as submit:
        for destination, plan, src_listing, dst_listing in plans:
            report.destinations.append(_copy_and_delete(params, settings, source, destination, plan, src_listing, dst_listing, submit))
    report.finished_at = dt.datetime.now(dt.UTC)
    publish_report(report)
    emit_report_events(report, params)
    if params.fail_on_errors and not report.ok:
        reasons = [f"{d.destination}: {d.failed_objects} failed" + (f"; stopped: {d.aborted}" if d.aborted else "")
                   + (f"; {d.deletes_blocked}" if d.deletes_blocked else "") for d in report.destinations]
        raise ReplicationIncomplete("replication incomplete: " + "; ".join(reasons), report)
    return report


def _copy_and_delete(
    params: ReplicationParams, settings: CopySettings, source: S3Location, destination: S3Location, plan: Plan,
    src_listing: Listing, dst_listing: Listing, submit: bool,
) -> DestinationReport:
    """Copy one destination's plan in batches (on the chosen task runner), then its deletes."""
    started = time.monotonic()
    d = DestinationReport(
        source=f"{params.source}:{source.url}", destination=f"{destination.label}:{destination.url}",
        skipped_objects=len(plan.in_sync), skipped_bytes=sum(o.size for o in plan.in_sync),
        source_listing_complete=src_listing.complete, destination_listing_complete=dst_listing.complete,
        deletes_blocked=plan.delete_blocked,
    )
    lags: list[float] = []
    unchecked_why = ""
    work = [(source, destination, batch, settings)
            for batch in batches(plan.copy, max_objects=params.batch_objects, max_bytes=params.batch_mib * MIB)]
    logger = get_run_logger()
    progress = CopyProgress(total_objects=len(plan.copy), total_bytes=plan.copy_bytes, total_batches=len(work))
    progress_id = None
    if work:  # a run with nothing to copy has no bar to show
        progress_id = create_progress_artifact(
            progress=0.0, key=PROGRESS_ARTIFACT_KEY, description=f"objects copied (or failed) to {d.destination}, by bytes"
        )
    done = 0
    for result in iter_batches(copy_batch, work, submit=submit):
        done += 1
        for o in result.outcomes:
            if o.status == "copied":
                d.copied_objects += 1
                d.copied_bytes += o.size
                d.resumed_parts += o.parts_resumed
                lags.append(o.lag_s or 0.0)
                if o.unchecked:
                    d.unchecked_reads.append(o.key)
                    unchecked_why = unchecked_why or f"{o.key}: {o.unchecked}"
            elif o.status == "vanished":
                d.vanished_objects += 1
            elif o.status == "not_attempted":
                d.not_attempted_objects += 1
                d.not_attempted_bytes += o.size
            else:
                d.failed.append(FailedObject(key=o.key, size=o.size, error=o.error or "unknown error"))
        d.retries += result.retries
        d.throttles += result.throttles
        d.server_errors += result.server_errors
        d.connection_errors += result.connection_errors
        d.lowest_concurrency = min(d.lowest_concurrency or result.lowest_concurrency, result.lowest_concurrency)
        progress.add(result.outcomes)
        show_progress(progress, d.destination, logger, progress_id, update_progress_artifact)
        if result.aborted and d.aborted is None:
            d.aborted = result.aborted
            logger.error("%s: copy stopped: %s", d.destination, result.aborted)
        if d.aborted and not submit:
            break  # in the flow process: the batches not started yet are not started at all
    for _, _, batch, _ in work[done:]:
        d.not_attempted_objects += len(batch)
        d.not_attempted_bytes += sum(o.size for o in batch)
    if d.aborted and params.delete and plan.delete and d.deletes_blocked is None:
        d.deletes_blocked = f"{len(plan.delete)} delete(s) not attempted: the copy stopped on refusals"
    if params.delete and plan.delete_blocked is None and d.aborted is None:
        deleted = delete_batch(destination, plan.delete, params.quarantine_prefix, params.quarantine_days, params.concurrency)
        d.deleted_objects = len(deleted.deleted)
        d.deleted_bytes = sum(o.size for o in deleted.deleted)
        d.quarantined_objects = deleted.quarantined
        sizes = {o.key: o.size for o in plan.delete}
        d.failed += [FailedObject(key=k, size=sizes.get(k, 0), error=f"delete: {e}") for k, e in deleted.failed]
    if d.unchecked_reads:
        logger.warning(
            "%s: %d object(s) copied and verified at the destination, but their source reads could not be checked "
            "against the source's own checksums (listed in the report as unchecked_reads); the first: %s",
            d.destination, len(d.unchecked_reads), unchecked_why,
        )
    d.lag = LagFigures.of(lags)
    d.pending_objects = len(d.failed) + d.not_attempted_objects
    d.pending_bytes = d.failed_bytes + d.not_attempted_bytes
    d.duration_s = time.monotonic() - started
    logger.info(
        "%s -> %s: copied %d (%.1f MiB), deleted %d, skipped %d, failed %d, retries %d, lag p50 %s s",
        d.source, d.destination, d.copied_objects, d.copied_bytes / MIB, d.deleted_objects, d.skipped_objects,
        d.failed_objects, d.retries, d.lag.p50_s,
    )
    return d


def publish_report(report: ReplicationReport) -> None:
    create_table_artifact(
        key=REPORT_ARTIFACT_KEY, table=report.table_rows(),
        description=f"Replication run {report.started_at:%Y-%m-%d %H:%M:%S} UTC: copied {report.total('copied_objects')}, "
                    f"deleted {report.total('deleted_objects')}, failed {report.total('failed_objects')}",
    )
    failed = report.failed_rows()
    if failed:
        shown = failed[:FAILURES_ARTIFACT_ROWS]
        what = "Objects this run could not replicate" if len(shown) == len(failed) else (
            f"The first {len(shown):,} of the {len(failed):,} objects this run could not replicate "
            "(the run's report lists them all)")
        create_table_artifact(key=FAILURES_ARTIFACT_KEY, table=shown, description=what)


def _resource(d: DestinationReport) -> dict[str, str]:
    return {
        "prefect.resource.id": f"llm-resilience.replication.{d.source.split(':')[0]}.{d.destination.split(':')[0]}",
        "prefect.resource.name": f"{d.source.split(':')[0]} -> {d.destination.split(':')[0]}",
    }


def emit_report_events(report: ReplicationReport, params: ReplicationParams) -> None:
    for d in report.destinations:
        figures = d.model_dump(mode="json", exclude={"failed", "lag", "unchecked_reads"})
        emit_event(event=f"{EVENT_PREFIX}.completed", resource=_resource(d), payload={**figures, "prefix": params.prefix,
                   "failed_objects": d.failed_objects, "failed_bytes": d.failed_bytes,
                   "unchecked_reads": len(d.unchecked_reads)})
        emit_event(event=f"{EVENT_PREFIX}.lag", resource=_resource(d), payload={
            **d.lag.model_dump(mode="json"), "pending_objects": d.pending_objects, "pending_bytes": d.pending_bytes,
            "prefix": params.prefix,
        })
        if d.failed or d.deletes_blocked or d.aborted:
            emit_event(event=f"{EVENT_PREFIX}.failed", resource=_resource(d), payload={
                "failed_objects": d.failed_objects, "failed_bytes": d.failed_bytes, "aborted": d.aborted,
                "not_attempted_objects": d.not_attempted_objects,
                "failed": [f.model_dump() for f in d.failed[:100]], "deletes_blocked": d.deletes_blocked,
                "prefix": params.prefix,
            })


class StatusParams(StrictInput):
    """Which replication to report on; no copy, no delete."""

    source: str = Field(default="region-a", description="StorageTarget block replicated from.")
    destinations: list[str] = Field(default=["region-b"], description="StorageTarget blocks replicated to.")
    prefix: str = Field(default="", description="Only objects below this prefix.")
    quarantine_prefix: str | None = Field(default=".llmr-quarantine", description="Excluded from the comparison.")
    exclude_prefixes: list[str] = Field(default_factory=lambda: list(DESTINATION_ONLY_PREFIXES),
                                        description="As replicate's: excluded from the comparison.")
    concurrency: int = Field(default=16, ge=1, le=256)

    @field_validator("exclude_prefixes")
    @classmethod
    def _clean_excludes(cls, value: list[str]) -> list[str]:
        return clean_exclude_prefixes(value)


class StatusReport(BaseModel):
    source: str
    destination: str
    in_sync_objects: int
    pending_objects: int
    pending_bytes: int
    pending_deletes: int
    current_lag_s: float  # age of the oldest source write not yet at the destination (0 when in sync)
    listings_complete: bool


@flow(name="replication-status", log_prints=True)
def replication_status(params: StatusParams | None = None) -> list[StatusReport]:
    params = params or StatusParams()
    source, destinations = resolve_targets(params.source, params.destinations, params.prefix, params.quarantine_prefix)
    as_repl = ReplicationParams(source=params.source, destinations=params.destinations, prefix=params.prefix,
                                quarantine_prefix=params.quarantine_prefix, exclude_prefixes=params.exclude_prefixes,
                                concurrency=params.concurrency, delete=True)
    now = time.time()
    out = []
    for destination in destinations:
        plan, src_listing, dst_listing = plan_destination(as_repl, source, destination)
        oldest = min((o.last_modified for o in plan.copy), default=now)
        out.append(StatusReport(
            source=f"{params.source}:{source.url}", destination=f"{destination.label}:{destination.url}",
            in_sync_objects=len(plan.in_sync), pending_objects=len(plan.copy), pending_bytes=plan.copy_bytes,
            pending_deletes=len(plan.delete), current_lag_s=round(max(0.0, now - oldest), 3),
            listings_complete=src_listing.complete and dst_listing.complete,
        ))
    create_table_artifact(key=STATUS_ARTIFACT_KEY, table=[s.model_dump() for s in out],
                          description="Replication status: pending objects and bytes, current lag (nothing copied)")
    for s in out:
        emit_event(
            event=f"{EVENT_PREFIX}.lag",
            resource={"prefect.resource.id": f"llm-resilience.replication.{params.source}.{s.destination.split(':')[0]}",
                      "prefect.resource.name": f"{params.source} -> {s.destination.split(':')[0]}"},
            payload={**s.model_dump(mode="json"), "kind": "status"},
        )
    return out


if __name__ == "__main__":
    print(replicate().model_dump_json(indent=2))
