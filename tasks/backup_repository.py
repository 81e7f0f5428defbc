"""The snapshot repository on any fsspec file system: config, packs, index, manifests, locks.

Layout and write order: docs/backup-format.md. Everything here is plain Python over an
``fsspec.AbstractFileSystem`` and a root path, so tests run it on ``memory://`` without a server.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import blake3
import fsspec
from fsspec.implementations.local import LocalFileSystem
import zstandard

from tasks.backup_errors import (
    CorruptObject,
    LockLost,
    RepositoryError,
    RepositoryLocked,
    RepositoryUnreachable,
    SnapshotNotFound,
)
from tasks.backup_manifest import Manifest, parse_manifest, snapshot_id
from tasks.errors import ConfigurationError

FORMAT_NAME = "llm-resilience-backup"
FORMAT_VERSION = 1
PACK_MAGIC = b"LLMRPAK1"
DEFAULT_CHUNKER = {"algorithm": "fastcdc-2020", "min_size": 256 * 1024, "avg_size": 512 * 1024, "max_size": 2 * 1024 * 1024}
DEFAULT_PACK_SIZE = 16 * 1024 * 1024
LOCK_LEASE = timedelta(minutes=10)
ZSTD_LEVEL = 3
MANIFEST_SUFFIX = ".json.zst"


@dataclass(frozen=True, slots=True)
class ChunkLocation:
    pack: str
    offset: int
    length: int  # stored (maybe compressed) length
    raw_length: int
    codec: str  # "zstd" or "raw"


@contextlib.contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Translate a store's exceptions into the project's, naming the object (`what`)."""
    try:
        yield
    except (ConfigurationError, RepositoryError, RepositoryUnreachable, CorruptObject, SnapshotNotFound):
        raise
    except FileNotFoundError:
        raise
    except PermissionError as exc:
        raise ConfigurationError(f"{what}: access denied ({exc}); check the credentials of the storage target") from None
    except Exception as exc:  # botocore / aiohttp / OS errors differ per backend
        name = type(exc).__name__
        text = str(exc)
        if "Credentials" in name or "credentials" in text.lower() or "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text:
            raise ConfigurationError(f"{what}: missing or invalid credentials ({name})") from None
        if isinstance(exc, (ConnectionError, TimeoutError)) or "Connect" in name or "Endpoint" in name or "Timeout" in name:
            raise RepositoryUnreachable(f"{what}: cannot reach the store ({name}: {text[:200]})") from None
        raise


def chunk_hash(data: bytes | memoryview) -> str:
    return blake3.blake3(data).hexdigest()


class Repository:
    """One repository at ``root`` of ``fs``. Thread-safe for concurrent pack writes and reads."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, url: str | None = None) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url or root
        self.config: dict = {}
        self.index: dict[str, ChunkLocation] = {}
        self.indexed_packs: set[str] = set()
        self.pack_entries: dict[str, list[list]] = {}
        self.index_files: list[str] = []
        self._lock = threading.Lock()
        self._tls = threading.local()

    def __getstate__(self) -> dict:
        """Picklable (a task on a Dask worker gets a copy): locks and thread-locals are made anew."""
        return {k: v for k, v in self.__dict__.items() if k not in {"_lock", "_tls"}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._tls = threading.local()

    # -- paths and writes ----------------------------------------------------------------------
    def write(self, path: str, data: bytes) -> None:
        """Write one whole object. On a local file system: temp file + rename, so it is never torn."""
        if isinstance(self.fs, LocalFileSystem):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    def p(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def pack_path(self, pack_id: str) -> str:
        return self.p("packs", pack_id[:2], pack_id)

    # -- config ------------------------------------------------------------------------------
    def exists(self) -> bool:
        with store_errors(f"repository {self.url}"):
            return self.fs.exists(self.p("config.json"))

    def init(self, chunker: dict | None = None, pack_size: int = DEFAULT_PACK_SIZE) -> None:
        config = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "repository_id": uuid.uuid4().hex,
            "hash": "blake3", "compression": "zstd", "chunker": dict(chunker or DEFAULT_CHUNKER),
            "pack_target_size": pack_size, "created_at": datetime.now(UTC).isoformat(),
        }
        with store_errors(f"repository {self.url}"):
            self.fs.makedirs(self.root, exist_ok=True)
            self.write(self.p("config.json"), json.dumps(config, indent=1).encode())
        self.config = config

    def open(self) -> Repository:
        name = f"{self.url}/config.json"
        with store_errors(f"repository {self.url}"):
            try:
                data = self.fs.cat_file(self.p("config.json"))
            except FileNotFoundError:
                raise RepositoryError(f"no backup repository at {self.url} ({name} is missing)") from None
        try:
            config = json.loads(data)
        except ValueError:
            raise CorruptObject(f"{name} is not valid JSON") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT_NAME or config.get("version") != FORMAT_VERSION:
            raise RepositoryError(f"{name}: unknown repository format {config!r:.120}")
        self.config = config
        return self

    def open_or_init(self) -> Repository:
        if not self.exists():
            self.init()
        return self.open()

    # -- index -------------------------------------------------------------------------------
    def list_dir(self, sub: str) -> list[str]:
        with store_errors(f"{self.url}/{sub}"):
            try:
                return sorted(self.fs.find(self.p(sub)))
            except FileNotFoundError:
                return []

    def pack_sizes(self) -> dict[str, int]:
        with store_errors(f"{self.url}/packs"):
            try:
                found = self.fs.find(self.p("packs"), detail=True)
            except FileNotFoundError:
                return {}
        return {path.rsplit("/", 1)[-1]: int(info.get("size") or 0) for path, info in found.items()}

    def load_index(self) -> dict[str, ChunkLocation]:
        index: dict[str, ChunkLocation] = {}
        packs: set[str] = set()
        self.pack_entries, self.index_files = {}, self.list_dir("index")
        for path in self.index_files:
            with store_errors(path):
                data = self.fs.cat_file(path)
            try:
                doc = json.loads(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31))
                for pack_id, entries in doc["packs"].items():
                    packs.add(pack_id)
                    self.pack_entries[pack_id] = entries
                    for cid, off, length, raw, codec in entries:
                        index.setdefault(cid, ChunkLocation(pack_id, off, length, raw, codec))
            except (ValueError, KeyError, TypeError, zstandard.ZstdError):
                raise CorruptObject(f"index file {path} does not parse; run verify_backup / prune to rebuild it") from None
        self.index, self.indexed_packs = index, packs
        return index

    def write_index(self, packs: dict[str, list[list]]) -> str | None:
        if not packs:
            return None
        data = json.dumps({"version": 1, "packs": packs}, separators=(",", ":")).encode()
        index_id = chunk_hash(data)
        with store_errors(f"{self.url}/index/{index_id}.json.zst"):
            self.write(self.index_path(index_id), zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data))
        return index_id

    def index_path(self, index_id: str) -> str:
        return self.p("index", f"{index_id}.json.zst")

    def read_pack_trailer(self, pack_id: str, data: bytes) -> list[list]:
        """Entries of a whole pack's trailer, after checking the pack hashes to its name."""
        if chunk_hash(data) != pack_id:
            raise CorruptObject(f"pack {pack_id}: content does not hash to its name (torn or altered)")
        if len(data) < 12 or data[-8:] != PACK_MAGIC:
            raise CorruptObject(f"pack {pack_id}: missing trailer")
        (size,) = struct.unpack("<I", data[-12:-8])
        try:
            return json.loads(zstandard.ZstdDecompressor().decompress(data[-12 - size : -12], max_output_size=1 << 28))["chunks"]
        except (ValueError, KeyError, zstandard.ZstdError):
            raise CorruptObject(f"pack {pack_id}: trailer does not parse") from None

    def adopt_unindexed_packs(self) -> tuple[list[str], list[str]]:
        """Index complete packs a crashed run wrote but never indexed; return (adopted, torn)."""
        adopted: dict[str, list[list]] = {}
        torn: list[str] = []
        for pack_id in self.pack_sizes():
            if pack_id in self.indexed_packs:
                continue
            with store_errors(f"pack {pack_id}"):
                data = self.fs.cat_file(self.pack_path(pack_id))
            try:
                adopted[pack_id] = self.read_pack_trailer(pack_id, data)
            except CorruptObject:
                torn.append(pack_id)
        if adopted:
            self.write_index(adopted)
            for pack_id, entries in adopted.items():
                self.indexed_packs.add(pack_id)
                self.pack_entries[pack_id] = entries
                for cid, off, length, raw, codec in entries:
                    self.index.setdefault(cid, ChunkLocation(pack_id, off, length, raw, codec))
        return sorted(adopted), torn

    # -- chunks ------------------------------------------------------------------------------
    def decode_chunk(self, cid: str, loc: ChunkLocation, stored: bytes | memoryview, verify: bool = True) -> bytes | memoryview:
        """The chunk's bytes; ``verify=False`` skips the hash when the caller hashes the whole file anyway."""
        dctx = getattr(self._tls, "dctx", None)
        if dctx is None:
            dctx = self._tls.dctx = zstandard.ZstdDecompressor()
        try:
            raw = dctx.decompress(stored, max_output_size=loc.raw_length) if loc.codec == "zstd" else stored
        except zstandard.ZstdError as exc:
            raise CorruptObject(f"chunk {cid} in pack {loc.pack}: does not decompress ({exc})") from None
        if len(raw) != loc.raw_length or (verify and chunk_hash(raw) != cid):
            raise CorruptObject(f"chunk {cid} in pack {loc.pack}: content does not match its hash")
        return raw

    def read_range(self, pack_id: str, start: int, end: int) -> bytes:
        with store_errors(f"pack {pack_id}"):
            try:
                return self.fs.cat_file(self.pack_path(pack_id), start=start, end=end)
            except FileNotFoundError:
                raise CorruptObject(f"pack {pack_id} is listed in the index but missing from the repository") from None

    def read_pack(self, pack_id: str) -> bytes:
        with store_errors(f"pack {pack_id}"):
            try:
                return self.fs.cat_file(self.pack_path(pack_id))
            except FileNotFoundError:
                raise CorruptObject(f"pack {pack_id} is listed in the index but missing from the repository") from None

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot_path(self, sid: str) -> str:
        return self.p("snapshots", f"{sid}{MANIFEST_SUFFIX}")

    def snapshot_ids(self) -> list[str]:
        names = [p.rsplit("/", 1)[-1] for p in self.list_dir("snapshots")]
        return [n[: -len(MANIFEST_SUFFIX)] for n in names if n.endswith(MANIFEST_SUFFIX)]

    def load_snapshot(self, sid: str) -> Manifest:
        name = f"snapshots/{sid}{MANIFEST_SUFFIX}"
        with store_errors(f"snapshot {sid}"):
            try:
                packed = self.fs.cat_file(self.snapshot_path(sid))
            except FileNotFoundError:
                raise SnapshotNotFound(f"snapshot {sid} does not exist in {self.url}") from None
        try:
            data = zstandard.ZstdDecompressor().decompress(packed, max_output_size=1 << 31)
        except zstandard.ZstdError as exc:
            raise CorruptObject(f"snapshot manifest {name} is not valid zstd ({exc})") from None
        return parse_manifest(data, name, sid)

    def snapshots(self) -> list[tuple[str, Manifest]]:
        """Every snapshot, oldest first; a corrupt manifest raises `CorruptObject` naming it."""
        found = [(sid, self.load_snapshot(sid)) for sid in self.snapshot_ids()]
        return sorted(found, key=lambda s: s[1].time)

    def resolve_snapshot(self, ref: str) -> tuple[str, Manifest]:
        """`latest`, a full id, or a unique id prefix (at least 6 hex digits)."""
        ids = self.snapshot_ids()
        if ref == "latest":
            if not ids:
                raise SnapshotNotFound(f"repository {self.url} holds no snapshot (asked for 'latest')")
            return self.snapshots()[-1]
        matches = [s for s in ids if s.startswith(ref)] if len(ref) >= 6 else [s for s in ids if s == ref]
        if len(matches) != 1:
            detail = "does not exist" if not matches else f"is ambiguous ({len(matches)} matches)"
            raise SnapshotNotFound(f"snapshot {ref!r} {detail} in {self.url}")
        return matches[0], self.load_snapshot(matches[0])

    def save_snapshot(self, manifest: Manifest) -> str:
        """Write a manifest, but only over chunks the index holds: a snapshot naming a chunk that
        was never stored (or never indexed) would report a backup that cannot be restored."""
        missing = manifest.referenced_chunks - self.index.keys()
        if missing:  # batches run elsewhere write index files this process has not read yet
            self.load_index()
            missing = manifest.referenced_chunks - self.index.keys()
        if missing:
            raise RepositoryError(
                f"snapshot not written to {self.url}: {len(missing)} of its {len(manifest.referenced_chunks)} chunks "
                f"are in no indexed pack (e.g. {sorted(missing)[0][:16]}); re-run the backup"
            )
        data = manifest.to_bytes()
        sid = snapshot_id(data)
        with store_errors(f"snapshot {sid}"):
            self.write(self.snapshot_path(sid), zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data))
        return sid

    # -- locks -------------------------------------------------------------------------------
    def _locks(self) -> list[tuple[str, dict]]:
        locks = []
        for path in self.list_dir("locks"):
            with store_errors(path):
                try:
                    locks.append((path, json.loads(self.fs.cat_file(path))))
                except (FileNotFoundError, ValueError):
                    continue  # removed meanwhile, or torn: a torn lock is not a valid lease
        return locks

    def acquire_lock(self, kind: str, owner: str = "", lease: timedelta = LOCK_LEASE) -> RepoLock:
        lock = RepoLock(self, kind, owner or f"{socket.gethostname()}:{os.getpid()}", lease)
        lock.write()
        now = datetime.now(UTC)
        for path, doc in self._locks():
            if path == lock.path or datetime.fromisoformat(doc.get("expires_at", "1970-01-01T00:00:00+00:00")) < now:
                continue
            if kind == "prune" or doc.get("kind") == "prune":
                lock.release()
                raise RepositoryLocked(
                    f"repository {self.url} is locked by a running {doc.get('kind')} ({doc.get('owner')}, "
                    f"lease until {doc.get('expires_at')}); {kind} refused to avoid a prune/backup race"
                )
        lock.renew_in_background()
        return lock

    def remove_expired_locks(self) -> int:
        now, removed = datetime.now(UTC), 0
        for path, doc in self._locks():
            if datetime.fromisoformat(doc.get("expires_at", "1970-01-01T00:00:00+00:00")) < now:
                with store_errors(path), contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path)
                removed += 1
        return removed


class RepoLock:
    """A lease on the repository. It holds only while it is renewed in time: a backup whose lease
    lapsed may have let a prune delete packs it deduplicated against (and a prune whose lease
    lapsed may have let a backup in), so a lapsed lease is lost for good, never quietly renewed.
    ``Repository.acquire_lock`` renews it from a thread until it is released, as restic does."""

    def __init__(self, repo: Repository, kind: str, owner: str, lease: timedelta = LOCK_LEASE) -> None:
        self.repo, self.kind, self.owner, self.lease = repo, kind, owner, lease
        self.path = repo.p("locks", f"{uuid.uuid4().hex}.json")
        self.expires_at = datetime.now(UTC)
        self.lost: str | None = None
        self._renew = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def write(self) -> None:
        now = datetime.now(UTC)
        expires_at = now + self.lease
        doc = {"kind": self.kind, "owner": self.owner, "created_at": now.isoformat(), "expires_at": expires_at.isoformat()}
        with store_errors(f"lock {self.path}"):
            self.repo.write(self.path, json.dumps(doc).encode())
        self.expires_at = expires_at

    def refresh(self) -> None:
        """Extend the lease; raises ``LockLost`` if it had already lapsed or its lock is gone."""
        with self._renew:
            self.check()
            self.write()

    def check(self) -> None:
        """Raise ``LockLost`` unless the lease still holds."""
        if self.lost is None:
            if datetime.now(UTC) >= self.expires_at:
                self.lost = f"its lease ran out at {self.expires_at.isoformat()}"
            else:
                with store_errors(f"lock {self.path}"):
                    if not self.repo.fs.exists(self.path):
                        self.lost = f"its lock {self.path} was removed"
        if self.lost is not None:
            raise LockLost(f"{self.kind} lock on {self.repo.url} lost: {self.lost} (a conflicting run may have "
                           f"started meanwhile); nothing more is written, re-run the {self.kind}")

    def valid(self) -> bool:
        try:
            self.check()
        except LockLost:
            return False
        return True

    def renew_in_background(self, every: float | None = None) -> None:
        """Renew the lease every ``every`` seconds (a quarter of it by default) until ``release()``,
        so work longer than one lease keeps it. A renewal the store refuses is tried again at the
        next tick; once the lease has lapsed, ``check()`` and ``valid()`` report it lost."""
        interval = every if every is not None else self.lease.total_seconds() / 4

        def renew() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except LockLost:
                    return
                except Exception:  # noqa: BLE001 - a store hiccup: the next tick (or the expiry) decides
                    continue

        self._renewer = threading.Thread(target=renew, name=f"lease-{self.kind}", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        with store_errors(f"lock {self.path}"), contextlib.suppress(FileNotFoundError):
            self.repo.fs.rm_file(self.path)


class PackWriter:
    """Collects compressed chunks into ~16 MiB packs; each pack is written whole, then indexed."""

    def __init__(self, repo: Repository, dedupe_against_index: bool = True) -> None:
        self.repo = repo
        self.dedupe_against_index = dedupe_against_index
        self.target = int(repo.config.get("pack_target_size", DEFAULT_PACK_SIZE))
        self._buf: list[bytes] = []
        self._entries: list[list] = []
        self._size = 0
        self._pending: set[str] = set()
        self._unindexed: dict[str, list[list]] = {}
        self._lock = threading.Lock()
        self.bytes_uploaded = 0
        self.chunks_uploaded = 0
        self._cctx = threading.local()

    def known(self, cid: str) -> bool:
        return (self.dedupe_against_index and cid in self.repo.index) or cid in self._pending

    def add(self, cid: str, raw: bytes | memoryview) -> bool:
        """Store a chunk unless the repository (or this writer) already has it; True if added."""
        if self.known(cid):
            return False
        cctx = getattr(self._cctx, "c", None)
        if cctx is None:
            cctx = self._cctx.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        packed = cctx.compress(raw)
        codec = "zstd"
        if len(packed) >= len(raw):
            packed, codec = bytes(raw), "raw"
        full = None
        with self._lock:
            if self.known(cid):
                return False
            self._pending.add(cid)
            self._entries.append([cid, self._size, len(packed), len(raw), codec])
            self._buf.append(packed)
            self._size += len(packed)
            if self._size >= self.target:
                full = self._take()
        if full:
            self._write_pack(*full)
        return True

    def _take(self) -> tuple[list[bytes], list[list]]:
        taken = (self._buf, self._entries)
        self._buf, self._entries, self._size = [], [], 0
        return taken

    def _write_pack(self, blobs: list[bytes], entries: list[list]) -> None:
        trailer = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(json.dumps({"chunks": entries}, separators=(",", ":")).encode())
        data = b"".join([*blobs, trailer, struct.pack("<I", len(trailer)), PACK_MAGIC])
        pack_id = chunk_hash(data)
        try:
            with store_errors(f"pack {pack_id}"):
                self.repo.write(self.repo.pack_path(pack_id), data)
        except BaseException:
            with self._lock:  # stored nowhere: a retry must add these chunks again, not skip them as known
                self._pending.difference_update(entry[0] for entry in entries)
            raise
        with self._lock:
            self._unindexed[pack_id] = entries
            self.bytes_uploaded += len(data)
            self.chunks_uploaded += len(entries)

    def flush(self) -> None:
        """Write the open pack, then one index file for every pack written since the last flush."""
        with self._lock:
            pending = self._take() if self._entries else None
        if pending:
            self._write_pack(*pending)
        with self._lock:
            unindexed, self._unindexed = self._unindexed, {}
        try:
            self.repo.write_index(unindexed)
        except BaseException:
            with self._lock:  # the packs are stored; the next flush indexes them
                self._unindexed = unindexed | self._unindexed
            raise
        with self._lock:
            for pack_id, entries in unindexed.items():
                self.repo.indexed_packs.add(pack_id)
                self.repo.pack_entries[pack_id] = entries
                for cid, off, length, raw, codec in entries:
                    self.repo.index.setdefault(cid, ChunkLocation(pack_id, off, length, raw, codec))
                    self._pending.discard(cid)
