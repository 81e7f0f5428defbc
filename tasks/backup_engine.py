"""Backing files up into a repository: scan a source, chunk, deduplicate, pack.

Plain Python over fsspec; the Prefect tasks in tasks/backup.py call these in batches.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import blake3
import fsspec
from fsspec.implementations.local import LocalFileSystem
from pyfastcdc import FastCDC

from tasks.backup_manifest import FileEntry, printable_name, unrestorable_name
from tasks.errors import ConfigurationError
from tasks.backup_repository import PackWriter, Repository, chunk_hash, store_errors
from tasks.batching import batches_by_size

READ_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A regular file found in a source: its path in the file system and in the snapshot."""

    fs_path: str
    rel: str
    size: int
    mtime_ns: int | None
    etag: str | None
    mode: int


@dataclass
class BatchStats:
    files: int = 0
    files_reused: int = 0
    bytes_total: int = 0
    bytes_read: int = 0
    chunks_new: int = 0
    skipped: list[str] = field(default_factory=list)

    def add(self, other: BatchStats) -> None:
        self.files += other.files
        self.files_reused += other.files_reused
        self.bytes_total += other.bytes_total
        self.bytes_read += other.bytes_read
        self.chunks_new += other.chunks_new
        self.skipped += other.skipped


def _mtime_ns(info: dict) -> int | None:
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, (int, float)):
        return int(value * 1e9)
    return None


def scan_source(fs: fsspec.AbstractFileSystem, root: str, url: str) -> tuple[list[SourceFile], list[str]]:
    """Regular files under ``root`` (sorted), and the paths skipped (links, special files, and
    names a snapshot cannot restore, each with its reason)."""
    root = root.rstrip("/")
    files, skipped = _scan_local(root, url) if is_local(fs) else _scan_fs(fs, root, url)
    kept = []
    for f in files:
        problem = unrestorable_name(f.rel)
        if problem:
            skipped.append(f"{printable_name(f.rel)} ({problem})")
        else:
            kept.append(f)
    return kept, [printable_name(s) for s in skipped]


def _scan_fs(fs: fsspec.AbstractFileSystem, root: str, url: str) -> tuple[list[SourceFile], list[str]]:
    with store_errors(f"source {url}"):
        try:
            found = fs.find(root, detail=True)
        except FileNotFoundError:
            return [], []
    files, skipped = [], []
    for path, info in sorted(found.items()):
        rel = path[len(root):].lstrip("/") if path.startswith(root) else path
        if info.get("islink") or info.get("type") not in ("file", None):
            skipped.append(rel)
            continue
        mode = info.get("mode")
        etag = info.get("ETag") or info.get("etag")
        files.append(SourceFile(path, rel, int(info.get("size") or 0), _mtime_ns(info),
                                str(etag).strip('"') if etag else None, int(mode) & 0o7777 if mode else 0o644))
    return files, skipped


def _scan_local(root: str, url: str) -> tuple[list[SourceFile], list[str]]:
    """os.scandir walk: one stat per entry, links never followed."""
    files, skipped = [], []
    if not os.path.isdir(root):  # a missing root would back up nothing and call it a snapshot
        raise ConfigurationError(f"source {url} is not a directory" if os.path.exists(root) else f"source {url} does not exist")
    stack = [root]
    while stack:
        top = stack.pop()
        with store_errors(f"source {url}"), os.scandir(top) as it:
            entries = list(it)
        for e in entries:
            rel = e.path[len(root) + 1:]
            if e.is_symlink():
                skipped.append(rel)
            elif e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            elif e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                files.append(SourceFile(e.path, rel, st.st_size, st.st_mtime_ns, None, st.st_mode & 0o7777))
            else:
                skipped.append(rel)
    files.sort(key=lambda f: f.rel)
    return files, sorted(skipped)


class Chunker:
    """FastCDC with the repository's parameters; one FastCDC per thread (it is not thread-safe)."""

    def __init__(self, params: dict) -> None:
        self.params = params
        self._local = threading.local()

    def _cdc(self) -> FastCDC:
        cdc = getattr(self._local, "cdc", None)
        if cdc is None:
            p = self.params
            cdc = self._local.cdc = FastCDC(p["avg_size"], min_size=p["min_size"], max_size=p["max_size"])
        return cdc

    def cut(self, fs: fsspec.AbstractFileSystem, path: str, size: int):  # noqa: ANN201 - iterator of pyfastcdc chunks
        if size == 0:
            return iter(())
        # Streams, not cut_file's mmap: mapped pages of large files would count as resident memory.
        stream = open(path, "rb", buffering=0) if is_local(fs) else fs.open(path, "rb", block_size=READ_BLOCK)
        return self._stream(stream)

    def _stream(self, stream):  # noqa: ANN001, ANN202
        with stream:
            yield from self._cdc().cut_stream(stream)

    def cut_bytes(self, data: bytes):  # noqa: ANN201
        return self._cdc().cut_buf(data) if data else iter(())


def store_chunks(chunks: Iterable, writer: PackWriter) -> tuple[str, list[str], int, int]:
    """Hash and store a stream of chunks; returns (file hash, chunk ids, bytes, new chunks)."""
    hasher = blake3.blake3()
    ids: list[str] = []
    size = new = 0
    for chunk in chunks:
        data = chunk.data
        hasher.update(data)
        cid = chunk_hash(data)
        ids.append(cid)
        size += len(data)
        new += writer.add(cid, data)
    return hasher.hexdigest(), ids, size, new


def backup_files(
    repo: Repository,
    writer: PackWriter,
    fs: fsspec.AbstractFileSystem,
    files: list[SourceFile],
    prefix: str,
    parent: dict[str, FileEntry],
    chunker: Chunker,
    workers: int = 4,
) -> tuple[list[FileEntry], BatchStats]:
    """Back up ``files`` (paths in the snapshot: ``prefix/rel``); unchanged files reuse the parent's chunks."""

    def unchanged(sf: SourceFile) -> FileEntry | None:
        old = parent.get(f"{prefix}/{sf.rel}")
        if (
            old is not None and old.size == sf.size and (sf.mtime_ns is not None or sf.etag is not None)
            and old.mtime_ns == sf.mtime_ns and old.etag == sf.etag and all(c in repo.index for c in old.chunks)
        ):
            return old if old.mode == sf.mode else old.model_copy(update={"mode": sf.mode})
        return None

    def one(sf: SourceFile) -> tuple[FileEntry, BatchStats]:
        with store_errors(f"source file {sf.fs_path}"):
            digest, ids, size, new = store_chunks(chunker.cut(fs, sf.fs_path, sf.size), writer)
        entry = FileEntry(path=f"{prefix}/{sf.rel}", size=size, mode=sf.mode, mtime_ns=sf.mtime_ns, etag=sf.etag,
                          hash=digest, chunks=ids)
        return entry, BatchStats(files=1, bytes_total=size, bytes_read=size, chunks_new=new)

    with gc_paused():
        return _backup_files(files, unchanged, one, workers)


def _backup_files(files, unchanged, one, workers):  # noqa: ANN001, ANN202 - the closures of backup_files
    total = BatchStats()
    results: dict[int, FileEntry] = {}
    to_read: list[tuple[int, SourceFile]] = []
    for i, sf in enumerate(files):
        old = unchanged(sf)
        if old is None:
            to_read.append((i, sf))
        else:
            results[i] = old
            total.files += 1
            total.files_reused += 1
            total.bytes_total += old.size
    if to_read:
        # Largest first, so one big file does not start last and run alone.
        to_read.sort(key=lambda t: -t[1].size)
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(to_read))), thread_name_prefix="backup") as pool:
            for (i, _), (entry, stats) in zip(to_read, pool.map(lambda t: one(t[1]), to_read)):
                results[i] = entry
                total.add(stats)
    return [results[i] for i in range(len(files))], total


def backup_blob(writer: PackWriter, data: bytes, path: str, chunker: Chunker, mtime_ns: int | None = None) -> tuple[FileEntry, BatchStats]:
    """Back up an in-memory object (the Redis export) as one snapshot file."""
    digest, ids, size, new = store_chunks(chunker.cut_bytes(data), writer)
    entry = FileEntry(path=path, size=size, mode=0o600, mtime_ns=mtime_ns, hash=digest, chunks=ids)
    return entry, BatchStats(files=1, bytes_total=size, bytes_read=size, chunks_new=new)


def batches(files: list[SourceFile], max_files: int = 2000, max_bytes: int = 256 * 1024 * 1024) -> list[list[SourceFile]]:
    """Split files into task-sized batches (hundreds of files or a few hundred MiB each)."""
    return batches_by_size(files, max_items=max_files, max_bytes=max_bytes)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC while tens of thousands of manifest entries are created (it rescans them all, repeatedly)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def default_workers() -> int:
    """Backup threads: 2 per core (reads wait on I/O; chunking, hashing and zstd release the GIL)."""
    return max(2, min(8, (os.cpu_count() or 2) * 2))


def default_restore_workers() -> int:
    """Restore threads: 1 per core; measured here, more threads than cores only added kernel time and memory."""
    return max(2, min(8, os.cpu_count() or 2))


def find_parent(repo: Repository, names: list[str]) -> tuple[str | None, dict[str, FileEntry]]:
    """The newest snapshot of the same set of sources: its unchanged files are not read again."""
    for sid, manifest in reversed(repo.snapshots()):
        if sorted(s.name for s in manifest.sources) == sorted(names):
            return sid, {f.path: f for f in manifest.files}
    return None, {}


def run_backup(
    repo: Repository,
    sources: list[tuple[str, fsspec.AbstractFileSystem, str, str]],
    workers: int = 4,
    tags: list[str] | None = None,
    now: datetime | None = None,
) -> tuple[str, BatchStats, PackWriter]:
    """Back up storage sources (name, fs, root, url) without Prefect: for scripts, tests, the benchmark.

    The same steps as the `backup` flow, in the same write order: packs, index, manifest last.
    """
    import socket
    from datetime import UTC

    from tasks.backup_manifest import Manifest, SourceInfo

    started = now or datetime.now(UTC)
    lock = repo.acquire_lock("backup")
    try:
        repo.load_index()
        repo.adopt_unindexed_packs()
        parent_id, parent = find_parent(repo, [s[0] for s in sources])
        writer = PackWriter(repo)
        chunker = Chunker(repo.config["chunker"])
        entries: list[FileEntry] = []
        total = BatchStats()
        infos = []
        for name, fs, root, url in sources:
            files, skipped = scan_source(fs, root, url)
            total.skipped += [f"{name}/{s}" for s in skipped]
            infos.append(SourceInfo(name=name, kind="storage", url=url))
            for batch in batches(files):
                got, stats = backup_files(repo, writer, fs, batch, name, parent, chunker, workers)
                entries += got
                total.add(stats)
                writer.flush()
                lock.check()  # renewed in the background; a lost lease stops the upload here, not at the manifest
        manifest = Manifest(time=started, parent=parent_id, tool="llm-resilience 0.1.0", hostname=socket.gethostname(),
                            tags=tags or [], sources=infos, files=entries, newest_data_time=started,
                            totals={"files": len(entries), "bytes": sum(e.size for e in entries)})
        lock.check()
        sid = repo.save_snapshot(manifest)
    finally:
        lock.release()
    return sid, total, writer
