"""Prefect tasks of the backup pipeline: thin wrappers that load blocks and call the engines in batches."""

from __future__ import annotations

import redis
from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import SessionStore, StorageTarget
from tasks.backup_engine import BatchStats, Chunker, SourceFile, backup_blob, backup_files, scan_source
from tasks.backup_manifest import FileEntry, Manifest
from tasks.backup_errors import CorruptObject
from tasks.backup_repository import PackWriter, RepoLock, Repository, chunk_hash
from tasks.errors import ConfigurationError
from tasks.redis_export import export_redis, load_redis
from tasks.redis_retry import bounded_retry
from tasks.restore_engine import RestoreStats, restore_files
from tasks.retry_policy import network_task_options

OPTS = {**network_task_options(retries=2), "cache_policy": NO_CACHE}


def load_storage(name: str) -> StorageTarget:
    try:
        return StorageTarget.load(name)
    except ValueError as exc:
        raise ConfigurationError(f"storage-target block {name!r} cannot be loaded: {exc}") from None


def load_session_store(name: str) -> SessionStore:
    try:
        return SessionStore.load(name)
    except ValueError as exc:
        raise ConfigurationError(f"session-store block {name!r} cannot be loaded: {exc}") from None


def raw_redis(store: SessionStore) -> redis.Redis:
    """A client that returns bytes (DUMP payloads are binary), with the block's credentials."""
    return redis.Redis.from_url(
        store.url, username=store.username,
        password=store.password.get_secret_value() if store.password else None,
        socket_timeout=max(store.socket_timeout_s, 30.0), socket_connect_timeout=store.socket_timeout_s,
        retry=bounded_retry(),
    )


def repository_for(target: StorageTarget, prefix: str) -> Repository:
    root = target.path(prefix) if prefix else target.root
    url = target.url.rstrip("/") + (f"/{prefix.strip('/')}" if prefix else "")
    return Repository(target.filesystem(), root, url)


@task(name="open-repository", **OPTS)
def open_repository(block: str, prefix: str, create: bool) -> Repository:
    repo = repository_for(load_storage(block), prefix)
    repo.open_or_init() if create else repo.open()
    repo.load_index()
    return repo


@task(name="lock-repository", **OPTS)
def lock_repository(repo: Repository, kind: str, owner: str) -> RepoLock:
    return repo.acquire_lock(kind, owner)


@task(name="adopt-unindexed-packs", **OPTS)
def adopt_packs(repo: Repository) -> tuple[list[str], list[str]]:
    return repo.adopt_unindexed_packs()


@task(name="scan-source", **OPTS)
def scan_storage_source(block: str) -> tuple[StorageTarget, list[SourceFile], list[str]]:
    target = load_storage(block)
    files, skipped = scan_source(target.filesystem(), target.root, target.url)
    return target, files, skipped


@task(name="backup-batch", **OPTS)
def backup_batch(
    repo: Repository, writer: PackWriter, target: StorageTarget, files: list[SourceFile], prefix: str,
    parent: dict[str, FileEntry], workers: int,
) -> tuple[list[FileEntry], BatchStats]:
    fs = target.filesystem()
    entries, stats = backup_files(repo, writer, fs, files, prefix, parent, Chunker(repo.config["chunker"]), workers)
    writer.flush()  # packs, then their index: this batch is durable before the next starts
    return entries, stats


@task(name="backup-batch-own-packs", **OPTS)
def backup_batch_own_packs(
    repo: Repository, target: StorageTarget, files: list[SourceFile], prefix: str,
    parent: dict[str, FileEntry], workers: int,
) -> tuple[list[FileEntry], BatchStats, int, int]:
    """A batch that runs away from the flow process (a Dask worker): it packs its chunks with a
    writer of its own and writes the packs' index before it returns, so the batch is durable and
    nothing but its file entries and figures travels back. It dedupes against the repository as it
    was at the flow's start, not against batches running beside it (see docs/backup-format.md)."""
    writer = PackWriter(repo)
    entries, stats = backup_batch.fn(repo, writer, target, files, prefix, parent, workers)
    return entries, stats, writer.bytes_uploaded, writer.chunks_uploaded


@task(name="export-session-store", **OPTS)
def export_session_store(block: str) -> tuple[str, bytes]:
    store = load_session_store(block)
    with raw_redis(store) as client:
        return store.url, export_redis(client)


@task(name="backup-session-export", **OPTS)
def backup_session_export(repo: Repository, writer: PackWriter, data: bytes, path: str, mtime_ns: int) -> tuple[FileEntry, BatchStats]:
    entry, stats = backup_blob(writer, data, path, Chunker(repo.config["chunker"]), mtime_ns)
    writer.flush()
    return entry, stats


@task(name="write-snapshot", **OPTS)
def write_snapshot(repo: Repository, lock: RepoLock, manifest: Manifest) -> str:
    lock.check()  # a lapsed lease may have let a prune delete packs this snapshot names
    return repo.save_snapshot(manifest)


@task(name="restore-batch", **OPTS)
def restore_batch(repo: Repository, files: list[FileEntry], target: StorageTarget, prefix: str, strip: str | None, workers: int) -> RestoreStats:
    root = target.path(prefix) if prefix else target.root
    return restore_files(repo, files, target.filesystem(), root, strip, workers)


@task(name="load-session-store", **OPTS)
def load_session_export(repo: Repository, entry: FileEntry, block: str) -> int:
    from tasks.restore_engine import ChunkReader

    reader = ChunkReader(repo, set())
    data = b"".join(reader.get(c) for c in entry.chunks)
    if chunk_hash(data) != entry.hash:
        raise CorruptObject(f"session export {entry.path!r} does not match its manifest hash")
    store = load_session_store(block)
    with raw_redis(store) as client:
        return load_redis(client, data, f"{entry.path} (snapshot)")
