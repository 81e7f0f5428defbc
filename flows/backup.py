"""Backup, restore, prune, verify and the weekly restore drill, over one snapshot repository.

    from flows.backup import backup, restore, BackupParams, RestoreParams
    result = backup(BackupParams(sources=["region-a"], session_stores=["region-a"]))
    restore(RestoreParams(snapshot=result.snapshot_id, target="my-dir", source="region-a"))

Format and guarantees: docs/backup-format.md. Every flow publishes a markdown summary and a table
artifact, and emits `llm-resilience.backup.completed` or `.failed` (payload `operation` says which).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.context import get_run_context
from prefect.events import emit_event
from pydantic import BaseModel, Field, model_validator

from blocks import StorageTarget
from tasks.backup import (
    adopt_packs,
    backup_batch,
    backup_batch_own_packs,
    backup_session_export,
    export_session_store,
    load_session_export,
    lock_repository,
    open_repository,
    restore_batch,
    scan_storage_source,
    write_snapshot,
)
from tasks.backup_engine import BatchStats, batches, default_restore_workers, default_workers, find_parent
from tasks.backup_errors import DrillThresholdExceeded
from tasks.backup_maintenance import execute_prune, plan_prune, verify_repository
from tasks.backup_manifest import REDIS_EXPORT_NAME, FileEntry, Manifest, SourceInfo, check_restorable, utcnow
from tasks.backup_repository import PackWriter
from tasks.backup_retention import RetentionPolicy
from tasks.errors import ConfigurationError, LLMResilienceError
from tasks.redis_export import export_time_ms
from tasks.batching import batches_by_size
from tasks.restore_engine import RestoreStats, select_files
from tasks.restore_sample import MIB, choose_sample, estimated_full_rto
from tasks.strict_input import StrictInput
from tasks.task_runners import TaskRunnerSettings, check_task_runner, run_batches, use_task_runner

EVENT_PREFIX = "llm-resilience.backup"
TOOL = "llm-resilience 0.1.0"
# Restore task runs: thousands of files or a few hundred MiB each (each batch verifies what it wrote).
RESTORE_BATCH_FILES = 2000
RESTORE_BATCH_BYTES = 256 * 1024 * 1024
T = TypeVar("T")


class RepositoryRef(StrictInput):
    """Where the repository lives: a StorageTarget block and a prefix below its root."""

    block: str = Field(default="region-b", description="StorageTarget block holding the repository.")
    prefix: str = Field(default="backups/llm-resilience", description="Path below the block's root ('' for the root).")


class BackupParams(StrictInput):
    repository: RepositoryRef = Field(default_factory=RepositoryRef)
    sources: list[str] = Field(default=["region-a"], description="StorageTarget blocks to back up (any fsspec URL).")
    session_stores: list[str] = Field(default=["region-a"], description="SessionStore blocks exported consistently.")
    tags: list[str] = Field(default_factory=list)
    workers: int = Field(default_factory=default_workers, ge=1, le=64, description="Threads reading/chunking files.")
    batch_files: int = Field(default=2000, ge=1, le=100_000, description="Files per batch (one task run each; at most 256 MiB).")
    task_runner: TaskRunnerSettings = Field(
        default_factory=TaskRunnerSettings,
        description="Where file batches run: in the flow process, or on a Dask cluster (each batch then writes its own packs).",
    )

    @model_validator(mode="after")
    def _something_to_back_up(self) -> BackupParams:
        """An empty snapshot would become `latest`: a restore, or a restore drill, would then pass on nothing."""
        for field in ("sources", "session_stores"):
            blank = [i for i, name in enumerate(getattr(self, field)) if not name.strip()]
            if blank:
                raise ValueError(f"{field}[{blank[0]}]: a block name is required")
        if not self.sources and not self.session_stores:
            raise ValueError("sources and session_stores are both empty: nothing to back up")
        return self


class BackupResult(BaseModel):
    snapshot_id: str
    parent: str | None
    files: int
    files_reused: int
    bytes_total: int
    bytes_read: int
    bytes_uploaded: int
    chunks_new: int
    dedupe_ratio: float | None
    duration_s: float
    adopted_packs: int
    skipped: list[str]


class RestoreParams(StrictInput):
    repository: RepositoryRef = Field(default_factory=RepositoryRef)
    snapshot: str = Field(default="latest", description="Snapshot id, a unique prefix (>= 6 hex digits), or 'latest'.")
    target: str | None = Field(default=None, description="StorageTarget block to restore files into (none: skip files).")
    target_prefix: str = Field(default="", description="Path below the target's root.")
    source: str | None = Field(default=None, description="Restore only this source, at the target's root.")
    redis_targets: dict[str, str] = Field(default_factory=dict, description="Snapshot source -> SessionStore block to load its export into.")
    workers: int = Field(default_factory=default_restore_workers, ge=1, le=64)
    task_runner: TaskRunnerSettings = Field(
        default_factory=TaskRunnerSettings, description="Where restore batches run: in the flow process, or on a Dask cluster."
    )


class RestoreResult(BaseModel):
    snapshot_id: str
    files: int
    bytes_written: int
    bytes_fetched: int
    redis_keys_loaded: dict[str, int]
    duration_s: float
    rpo_s: float
    snapshot_files: int = 0
    snapshot_bytes: int = 0


class PruneParams(StrictInput):
    repository: RepositoryRef = Field(default_factory=RepositoryRef)
    policy: RetentionPolicy = Field(default_factory=lambda: RetentionPolicy(keep_last=7, keep_daily=14, keep_weekly=8, keep_monthly=12))
    dry_run: bool = Field(default=False, description="Only list what would be removed.")
    repack_threshold: float = Field(default=0.5, ge=0, le=1, description="Repack a pack when more than this fraction is unused.")


class PruneResult(BaseModel):
    dry_run: bool
    kept: dict[str, list[str]]
    forgotten: list[str]
    packs_deleted: list[str]
    packs_repacked: list[str]
    bytes_freed: int


class VerifyParams(StrictInput):
    repository: RepositoryRef = Field(default_factory=RepositoryRef)
    read_fraction: float = Field(default=0.05, ge=0, le=1, description="Random fraction of packs read and hashed.")
    scrub_runs: int = Field(default=7, ge=0, description="Rolling scrub: every chunk is read within this many runs (0: off).")


class BadChunkReport(BaseModel):
    chunk: str
    pack: str
    error: str
    files: list[str]


class VerifyResult(BaseModel):
    ok: bool
    snapshots: int
    packs: int
    packs_read: int
    chunks_read: int
    bytes_read: int
    scrub_slice: str
    problems: list[str]
    bad_chunks: list[BadChunkReport]


class DrillParams(StrictInput):
    repository: RepositoryRef = Field(default_factory=RepositoryRef)
    scratch: str | None = Field(default=None, description="StorageTarget block for the scratch restore (none: a local temp dir).")
    scratch_prefix: str = Field(default="restore-drill")
    sample_mib: float | None = Field(
        default=1024.0, gt=0,
        description="Restore at most this many MiB of the snapshot (every source's smallest file always); none: the whole snapshot.",
    )
    max_rto_s: float = Field(default=900.0, gt=0, description="Fail when the restore (estimated from the sample) takes longer (seconds).")
    max_rpo_s: float = Field(default=26 * 3600.0, gt=0, description="Fail when the newest snapshot is older (seconds).")
    workers: int = Field(default_factory=default_restore_workers, ge=1, le=64)
    task_runner: TaskRunnerSettings = Field(
        default_factory=TaskRunnerSettings, description="Where restore batches run: in the flow process, or on a Dask cluster."
    )


class DrillResult(BaseModel):
    snapshot_id: str
    rto_s: float  # the drill's own restore, measured
    rto_estimated_s: float  # a restore of the whole snapshot, scaled from the sample (= rto_s when it was whole)
    rpo_s: float
    files: int
    bytes: int
    snapshot_files: int
    snapshot_bytes: int
    sampled: bool
    passed: bool
    reasons: list[str]


# -- reporting ---------------------------------------------------------------------------------
def _run_owner() -> str:
    with contextlib.suppress(Exception):
        return f"{socket.gethostname()}:{os.getpid()}:{get_run_context().flow_run.id}"
    return f"{socket.gethostname()}:{os.getpid()}"


def _publish(operation: str, title: str, rows: dict[str, Any], extra_md: str = "") -> None:
    table = [{"figure": k, "value": v} for k, v in rows.items()]
    create_table_artifact(key=f"{operation}-report", table=table, description=title)
    lines = [f"# {title}", "", "| figure | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows.items()]]
    create_markdown_artifact(key=f"{operation}-summary", markdown="\n".join(lines) + ("\n\n" + extra_md if extra_md else ""), description=title)


def _emit(ok: bool, operation: str, repo_url: str, payload: dict[str, Any]) -> None:
    emit_event(
        event=f"{EVENT_PREFIX}.{'completed' if ok else 'failed'}",
        resource={"prefect.resource.id": f"llm-resilience.backup.{operation}", "prefect.resource.name": operation,
                  "llm-resilience.repository": repo_url},
        payload={"operation": operation, **payload},
    )


def _reported(operation: str, repo_ref: RepositoryRef, body: Callable[[], T]) -> T:
    """Run a flow body; emit `.failed` with the error (and re-raise) when it fails."""
    try:
        return body()
    except Exception as exc:
        _emit(False, operation, f"{repo_ref.block}/{repo_ref.prefix}", {"error": f"{type(exc).__name__}: {exc}"[:1000]})
        raise


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


# -- backup ------------------------------------------------------------------------------------
@flow(name="backup", log_prints=True)
def backup(params: BackupParams | None = None) -> BackupResult:
    params = params or BackupParams()
    check_task_runner(params.task_runner)  # an unreachable Dask scheduler stops the run before any work
    with use_task_runner(params.task_runner) as submit:
        return _reported("backup", params.repository, lambda: _backup(params, submit=submit))


def _backup(params: BackupParams, *, submit: bool = False) -> BackupResult:
    logger = get_run_logger()
    started, t0 = utcnow(), time.perf_counter()
    names = [*params.sources, *[f"sessions-{s}" for s in params.session_stores]]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"sources: duplicate names in {names}")
    repo = open_repository(params.repository.block, params.repository.prefix, create=True)
    lock = lock_repository(repo, "backup", _run_owner())
    try:
        adopted, torn = adopt_packs(repo)
        if adopted or torn:
            logger.info("adopted %d complete packs from an interrupted run; %d torn packs left for prune", len(adopted), len(torn))
        parent_id, parent_files = find_parent(repo, names)
        writer = PackWriter(repo)
        entries: list[FileEntry] = []
        totals = BatchStats()
        sources: list[SourceInfo] = []
        scanned = [(name, *scan_storage_source(name)) for name in params.sources]
        total_bytes = sum(sf.size for _, _, files, _ in scanned for sf in files) or 1
        progress_id = create_progress_artifact(progress=0.0, key="backup-progress", description="bytes processed")
        elsewhere_bytes = elsewhere_chunks = 0  # uploaded by batches that ran on another runner's writers
        for name, target, files, skipped in scanned:
            sources.append(SourceInfo(name=name, kind="storage", url=target.url))
            totals.skipped += [f"{name}/{s}" for s in skipped]
            for s in skipped[:20]:
                logger.warning("source %s: skipped %s", name, s)
            if submit:
                futures = [backup_batch_own_packs.submit(repo, target, batch, name, parent_files, params.workers)
                           for batch in batches(files, max_files=params.batch_files)]
                # in order (the manifest lists files as scanned), checking the lease as each one lands
                done = (future.result() for future in futures)
            else:
                done = (backup_batch(repo, writer, target, batch, name, parent_files, params.workers) + (0, 0)
                        for batch in batches(files, max_files=params.batch_files))
            for batch_entries, stats, uploaded, chunks in done:
                entries += batch_entries
                totals.add(stats)
                elsewhere_bytes, elsewhere_chunks = elsewhere_bytes + uploaded, elsewhere_chunks + chunks
                lock.check()  # renewed in the background; a lost lease stops the upload here, not at the manifest
                update_progress_artifact(progress_id, min(100.0, 100.0 * totals.bytes_total / total_bytes))
        for block in params.session_stores:
            url, data = export_session_store(block)
            exported_ns = export_time_ms(data) * 1_000_000
            entry, stats = backup_session_export(repo, writer, data, f"sessions-{block}/{REDIS_EXPORT_NAME}", exported_ns)
            sources.append(SourceInfo(name=f"sessions-{block}", kind="redis", url=url))
            entries.append(entry)
            totals.add(stats)
        update_progress_artifact(progress_id, 100.0)
        manifest = Manifest(
            time=started, parent=parent_id, tool=TOOL, hostname=socket.gethostname(), tags=params.tags,
            sources=sources, files=entries, totals={"files": len(entries), "bytes": sum(e.size for e in entries)},
            newest_data_time=started,  # every byte was read at or after this moment: RPO = now - started
        )
        sid = write_snapshot(repo, lock, manifest)
    finally:
        lock.release()
    uploaded = writer.bytes_uploaded + elsewhere_bytes
    result = BackupResult(
        snapshot_id=sid, parent=parent_id, files=totals.files, files_reused=totals.files_reused,
        bytes_total=totals.bytes_total, bytes_read=totals.bytes_read, bytes_uploaded=uploaded,
        chunks_new=writer.chunks_uploaded + elsewhere_chunks,
        dedupe_ratio=round(totals.bytes_total / uploaded, 2) if uploaded else None,
        duration_s=round(time.perf_counter() - t0, 3), adopted_packs=len(adopted), skipped=totals.skipped,
    )
    _publish("backup", f"Backup snapshot {sid[:16]} to {repo.url}", {
        "snapshot": sid[:16], "parent": (parent_id or "-")[:16], "files": result.files,
        "files unchanged (not read)": result.files_reused, "bytes in snapshot": _mib(result.bytes_total),
        "bytes read": _mib(result.bytes_read), "bytes uploaded": _mib(result.bytes_uploaded),
        "dedupe ratio": result.dedupe_ratio if result.dedupe_ratio is not None else "inf (nothing new)",
        "duration (s)": result.duration_s, "packs adopted from a crashed run": result.adopted_packs,
        "skipped (links, special files, unrestorable names)": len(result.skipped),
    })
    _emit(True, "backup", repo.url, result.model_dump(exclude={"skipped"}))
    logger.info("backup %s: %d files, %s read, %s uploaded in %.1fs", sid[:16], result.files, _mib(result.bytes_read),
                _mib(result.bytes_uploaded), result.duration_s)
    return result


# -- restore -----------------------------------------------------------------------------------
@flow(name="restore", log_prints=True)
def restore(params: RestoreParams | None = None) -> RestoreResult:
    params = params or RestoreParams()
    check_task_runner(params.task_runner)  # an unreachable Dask scheduler stops the run before any work
    with use_task_runner(params.task_runner) as submit:
        return _reported("restore", params.repository, lambda: _restore(params, submit=submit))


def _restore(params: RestoreParams, target: StorageTarget | None = None, *, submit: bool = False,
             sample_bytes: int | None = None) -> RestoreResult:
    from tasks.backup import load_storage

    t0 = time.perf_counter()
    repo = open_repository(params.repository.block, params.repository.prefix, create=False)
    sid, manifest = repo.resolve_snapshot(params.snapshot)
    check_restorable(manifest)  # before anything is written
    if params.source is not None and params.source not in {s.name for s in manifest.sources}:
        raise ConfigurationError(f"source {params.source!r} is not in snapshot {sid[:16]} (has {[s.name for s in manifest.sources]})")
    redis_sources = {s.name for s in manifest.sources if s.kind == "redis"}
    for name in params.redis_targets:
        if name not in redis_sources:
            raise ConfigurationError(f"redis_targets: {name!r} is not a session-store source of snapshot {sid[:16]} ({sorted(redis_sources)})")
    stats = RestoreStats()
    if target is None and params.target:
        target = load_storage(params.target)
    if target is not None:
        files = select_files(manifest.files, params.source)
        if sample_bytes is not None:
            files = choose_sample(files, [s.name for s in manifest.sources], sample_bytes, seed=sid)
        work = [(repo, batch, target, params.target_prefix, params.source, params.workers)
                for batch in batches_by_size(files, max_items=RESTORE_BATCH_FILES, max_bytes=RESTORE_BATCH_BYTES)]
        for part in run_batches(restore_batch, work, submit=submit):
            stats.files += part.files
            stats.bytes_written += part.bytes_written
            stats.bytes_fetched += part.bytes_fetched
            stats.failed += part.failed
    loaded: dict[str, int] = {}
    for name, block in params.redis_targets.items():
        entry = next(f for f in manifest.files if f.path == f"{name}/{REDIS_EXPORT_NAME}")
        loaded[name] = load_session_export(repo, entry, block)
    result = RestoreResult(
        snapshot_id=sid, files=stats.files, bytes_written=stats.bytes_written, bytes_fetched=stats.bytes_fetched,
        redis_keys_loaded=loaded, duration_s=round(time.perf_counter() - t0, 3),
        rpo_s=round((utcnow() - (manifest.newest_data_time or manifest.time)).total_seconds(), 1),
        snapshot_files=len(manifest.files), snapshot_bytes=sum(f.size for f in manifest.files),
    )
    _publish("restore", f"Restore of snapshot {sid[:16]} from {repo.url}", {
        "snapshot": sid[:16], "snapshot time": manifest.time.isoformat(), "files restored and verified": result.files,
        "bytes written": _mib(result.bytes_written), "bytes fetched": _mib(result.bytes_fetched),
        "redis keys loaded": sum(loaded.values()), "duration = measured RTO (s)": result.duration_s,
        "data age = RPO (s)": result.rpo_s,
    })
    _emit(True, "restore", repo.url, result.model_dump())
    return result


# -- prune -------------------------------------------------------------------------------------
@flow(name="prune", log_prints=True)
def prune(params: PruneParams | None = None) -> PruneResult:
    params = params or PruneParams()
    return _reported("prune", params.repository, lambda: _prune(params))


def _prune(params: PruneParams) -> PruneResult:
    repo = open_repository(params.repository.block, params.repository.prefix, create=False)
    lock = None if params.dry_run else lock_repository(repo, "prune", _run_owner())
    try:
        if lock is not None:
            repo.remove_expired_locks()
            repo.adopt_unindexed_packs()
        plan, kept = plan_prune(repo, params.policy, params.repack_threshold)
        if lock is not None:
            execute_prune(repo, plan, kept, lock.check)
    finally:
        if lock is not None:
            lock.release()
    result = PruneResult(dry_run=params.dry_run, kept=plan.keep, forgotten=plan.forget, packs_deleted=plan.delete_packs,
                         packs_repacked=plan.repack_packs, bytes_freed=plan.bytes_freed)
    verb = "would remove" if params.dry_run else "removed"
    md = "\n".join([f"Snapshots {verb}:", *[f"- `{s[:16]}`" for s in plan.forget]] or ["nothing"])
    _publish("prune", f"Prune of {repo.url}{' (dry run)' if params.dry_run else ''}", {
        "dry run": params.dry_run, "snapshots kept": len(plan.keep), f"snapshots {verb}": len(plan.forget),
        f"packs {verb}": len(plan.delete_packs), "packs repacked": len(plan.repack_packs), "bytes freed": _mib(plan.bytes_freed),
    }, md)
    _emit(True, "prune", repo.url, result.model_dump(exclude={"kept"}))
    return result


# -- verify ------------------------------------------------------------------------------------
@flow(name="verify-backup", log_prints=True)
def verify_backup(params: VerifyParams | None = None) -> VerifyResult:
    params = params or VerifyParams()
    return _reported("verify", params.repository, lambda: _verify(params))


def _verify(params: VerifyParams) -> VerifyResult:
    repo = open_repository(params.repository.block, params.repository.prefix, create=False)
    report = verify_repository(repo, params.read_fraction, params.scrub_runs)
    result = VerifyResult(
        ok=report.ok, snapshots=report.snapshots, packs=report.packs, packs_read=report.packs_read,
        chunks_read=report.chunks_read, bytes_read=report.bytes_read, scrub_slice=report.scrub_slice,
        problems=report.problems, bad_chunks=[BadChunkReport(**vars(b)) for b in report.bad_chunks],
    )
    md = "\n".join([*[f"- {p}" for p in report.problems],
                    *[f"- bad chunk `{b.chunk}` in pack `{b.pack}`: {b.error}; files: {', '.join(b.files) or 'none'}" for b in report.bad_chunks]])
    _publish("verify", f"Verify of {repo.url}: {'ok' if report.ok else 'PROBLEMS FOUND'}", {
        "snapshots": report.snapshots, "packs": report.packs, "packs read": report.packs_read,
        "chunks read and hashed": report.chunks_read, "bytes read": _mib(report.bytes_read),
        "scrub slice": report.scrub_slice or "-", "problems": len(report.problems), "bad chunks": len(report.bad_chunks),
    }, md)
    if not report.ok:
        raise BackupVerificationFailed(f"repository {repo.url} failed verification: {md[:2000]}", result)
    _emit(True, "verify", repo.url, result.model_dump())
    return result


class BackupVerificationFailed(LLMResilienceError):
    """verify_backup found problems; ``result`` holds the full report (bad chunks and their files)."""

    def __init__(self, message: str, result: VerifyResult) -> None:
        super().__init__(message)
        self.result = result


# -- restore drill -----------------------------------------------------------------------------
@flow(name="restore-drill", log_prints=True)
def restore_drill(params: DrillParams | None = None) -> DrillResult:
    params = params or DrillParams()
    check_task_runner(params.task_runner)
    with use_task_runner(params.task_runner) as submit:
        return _reported("restore-drill", params.repository, lambda: _drill(params, submit=submit))


def _drill(params: DrillParams, *, submit: bool = False) -> DrillResult:
    from tasks.backup import load_storage

    scratch_dir = None
    if params.scratch:
        target = load_storage(params.scratch)
    else:
        scratch_dir = tempfile.mkdtemp(prefix="llmr-restore-drill-")
        target = StorageTarget(url=f"file://{scratch_dir}")
    try:
        sample = None if params.sample_mib is None else int(params.sample_mib * MIB)
        restored = _restore(RestoreParams(repository=params.repository, snapshot="latest", target_prefix=params.scratch_prefix,
                                          workers=params.workers), target=target, submit=submit, sample_bytes=sample)
    finally:
        if scratch_dir:
            shutil.rmtree(scratch_dir, ignore_errors=True)
    sampled = restored.files < restored.snapshot_files
    estimate = round(estimated_full_rto(restored.duration_s, restored.bytes_written, restored.files,
                                        restored.snapshot_bytes, restored.snapshot_files), 3)
    reasons = []
    if estimate > params.max_rto_s:
        how = f"estimated from a sample of {_mib(restored.bytes_written)} restored in {restored.duration_s:.1f}s" if sampled else "measured"
        reasons.append(f"RTO {estimate:.1f}s ({how}) exceeds max_rto_s {params.max_rto_s:.0f}s")
    if restored.rpo_s > params.max_rpo_s:
        reasons.append(f"RPO {restored.rpo_s:.0f}s exceeds max_rpo_s {params.max_rpo_s:.0f}s")
    result = DrillResult(snapshot_id=restored.snapshot_id, rto_s=restored.duration_s, rto_estimated_s=estimate, rpo_s=restored.rpo_s,
                         files=restored.files, bytes=restored.bytes_written, snapshot_files=restored.snapshot_files,
                         snapshot_bytes=restored.snapshot_bytes, sampled=sampled, passed=not reasons, reasons=reasons)
    _publish("restore-drill", f"Restore drill: {'passed' if result.passed else 'FAILED'}", {
        "snapshot": result.snapshot_id[:16],
        "files restored and verified": f"{result.files} of {result.snapshot_files}" + (" (sample)" if sampled else ""),
        "bytes": f"{_mib(result.bytes)} of {_mib(result.snapshot_bytes)}",
        "measured RTO (s)": result.rto_s, "estimated full RTO (s)": result.rto_estimated_s, "RTO threshold (s)": params.max_rto_s,
        "RPO: age of newest data (s)": result.rpo_s, "RPO threshold (s)": params.max_rpo_s,
    }, "\n".join(f"- {r}" for r in reasons))
    if reasons:
        raise DrillThresholdExceeded("; ".join(reasons))
    _emit(True, "restore-drill", f"{params.repository.block}/{params.repository.prefix}", result.model_dump())
    return result
