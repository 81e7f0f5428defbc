"""Restoring snapshot files to any fsspec target, each verified, none outside the target."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import blake3
import fsspec

from tasks.backup_engine import gc_paused, is_local
from tasks.backup_errors import CorruptObject, UnsafePath
from tasks.backup_manifest import FileEntry, safe_relative_path
from tasks.backup_repository import Repository, store_errors

PARTIAL_SUFFIX = ".llmr-partial"
WHOLE_PACK_FRACTION = 0.5


@dataclass
class RestoreStats:
    files: int = 0
    bytes_written: int = 0
    bytes_fetched: int = 0
    failed: list[str] = field(default_factory=list)


def target_relative(entry: FileEntry, strip_prefix: str | None) -> str:
    """The path below the target: the manifest path, minus ``strip_prefix/`` when restoring one source."""
    rel = safe_relative_path(entry.path)
    if strip_prefix:
        rel = rel[len(strip_prefix) + 1:] if rel.startswith(strip_prefix + "/") else rel
    return safe_relative_path(rel)


def select_files(files: list[FileEntry], source: str | None) -> list[FileEntry]:
    return [f for f in files if source is None or f.path.startswith(source + "/")]


def whole_pack_reads(repo: Repository, files: list[FileEntry]) -> set[str]:
    """Packs of which restore needs at least half: read them whole once instead of range by range."""
    needed: dict[str, int] = defaultdict(int)
    seen: set[str] = set()
    for f in files:
        for cid in f.chunks:
            if cid not in seen:
                seen.add(cid)
                loc = repo.index.get(cid)
                if loc is None:
                    raise CorruptObject(f"file {f.path!r}: chunk {cid[:16]} is in no indexed pack of {repo.url} "
                                        "(its pack or index file is missing; run verify_backup)")
                needed[loc.pack] += loc.length
    sizes = {p: sum(e[2] for e in repo.pack_entries.get(p, [])) or 1 for p in needed}
    return {p for p, n in needed.items() if n >= WHOLE_PACK_FRACTION * sizes[p]}


def _local_guard(root_real: str, dest: str) -> None:
    """Refuse a write whose existing parent resolves outside the target (a planted symlink)."""
    probe = os.path.dirname(dest)
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    real = os.path.realpath(probe or "/")
    if real != root_real and not real.startswith(root_real + os.sep):
        raise UnsafePath(f"restore path {dest!r} resolves outside the target {root_real!r} (through a link)")


class ChunkReader:
    """Reads verified chunks; keeps the last whole pack per thread for packs read whole."""

    def __init__(self, repo: Repository, whole: set[str]) -> None:
        self.repo, self.whole = repo, whole
        self._local = threading.local()
        self.fetched = 0
        self._lock = threading.Lock()

    def get(self, cid: str, verify: bool = True) -> bytes | memoryview:
        loc = self.repo.index.get(cid)
        if loc is None:
            raise CorruptObject(f"chunk {cid} is referenced by the snapshot but not in the repository index")
        if loc.pack in self.whole:
            cached = getattr(self._local, "pack", (None, b""))
            if cached[0] != loc.pack:
                cached = self._local.pack = (loc.pack, self.repo.read_pack(loc.pack))
                self._count(len(cached[1]))
            stored = memoryview(cached[1])[loc.offset: loc.offset + loc.length]
        else:
            stored = self.repo.read_range(loc.pack, loc.offset, loc.offset + loc.length)
            self._count(len(stored))
        return self.repo.decode_chunk(cid, loc, stored, verify)

    def _count(self, n: int) -> None:
        with self._lock:
            self.fetched += n


def restore_files(
    repo: Repository,
    files: list[FileEntry],
    dest_fs: fsspec.AbstractFileSystem,
    dest_root: str,
    strip_prefix: str | None = None,
    workers: int = 4,
    whole: set[str] | None = None,
) -> RestoreStats:
    """Write each file below ``dest_root`` and check its BLAKE3 against the manifest."""
    dest_root = dest_root.rstrip("/")
    plans = [(f, target_relative(f, strip_prefix)) for f in files]  # every path checked before any write
    local = is_local(dest_fs)
    root_real = os.path.realpath(dest_root) if local else ""
    if local:
        os.makedirs(dest_root, exist_ok=True)
    reader = ChunkReader(repo, whole if whole is not None else whole_pack_reads(repo, files))

    def mismatch(entry: FileEntry) -> None:
        """A file's hash is wrong: name the bad chunk (each re-read with its own hash check), or the file."""
        for cid in entry.chunks:
            reader.get(cid, verify=True)
        raise CorruptObject(f"restored file {entry.path!r} does not match its manifest hash")

    checked_dirs: set[str] = set()
    dirs_lock = threading.Lock()

    def prepare_dir(parent: str) -> None:
        """Check once per directory that it resolves inside the target, then create it."""
        if parent in checked_dirs:
            return
        _local_guard(root_real, parent + "/x")
        os.makedirs(parent, exist_ok=True)
        if os.path.realpath(parent) != root_real and not os.path.realpath(parent).startswith(root_real + os.sep):
            raise UnsafePath(f"restore directory {parent!r} resolves outside the target {root_real!r}")
        with dirs_lock:
            checked_dirs.add(parent)

    def write_local(entry: FileEntry, dest: str) -> int:
        prepare_dir(os.path.dirname(dest))
        tmp = dest + PARTIAL_SUFFIX
        hasher = blake3.blake3()
        # O_NOFOLLOW: a planted link at the partial name is never followed; os.replace swaps links, not targets.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, entry.mode & 0o7777 or 0o644)
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                for cid in entry.chunks:
                    data = reader.get(cid, verify=False)  # the whole-file hash below covers every byte
                    hasher.update(data)
                    out.write(data)
                if entry.mode & 0o7777:
                    os.fchmod(out.fileno(), entry.mode & 0o7777)
            if hasher.hexdigest() != entry.hash:
                mismatch(entry)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return entry.size

    def write_remote(entry: FileEntry, dest: str) -> int:
        """Write under a partial name and move it into place once verified: an object already at
        the target (restoring into the original bucket) is replaced only by verified bytes."""
        hasher = blake3.blake3()
        tmp = dest + PARTIAL_SUFFIX
        with store_errors(f"restore target {dest}"):
            try:
                with dest_fs.open(tmp, "wb") as out:
                    for cid in entry.chunks:
                        data = reader.get(cid, verify=False)
                        hasher.update(data)
                        out.write(data)
                if hasher.hexdigest() != entry.hash:
                    mismatch(entry)
                dest_fs.mv(tmp, dest)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    dest_fs.rm_file(tmp)
                raise
        return entry.size

    write = write_local if local else write_remote
    # Files in pack order, cut into contiguous runs per worker, so a whole pack is read once.
    plans.sort(key=lambda p: (repo.index[p[0].chunks[0]].pack, repo.index[p[0].chunks[0]].offset) if p[0].chunks and p[0].chunks[0] in repo.index else ("", 0))
    step = max(1, len(plans) // max(1, workers * 4))
    runs = [plans[i: i + step] for i in range(0, len(plans), step)]
    stats = RestoreStats()

    def run(group: list[tuple[FileEntry, str]]) -> int:
        return sum(write(entry, f"{dest_root}/{rel}") for entry, rel in group)

    with gc_paused(), ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="restore") as pool:
        for written in pool.map(run, runs):
            stats.bytes_written += written
    stats.files = len(plans)
    stats.bytes_fetched = reader.fetched
    return stats
