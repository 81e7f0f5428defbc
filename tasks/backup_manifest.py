"""The snapshot manifest (schema version 1, docs/backup-format.md) and the path checks restore relies on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import blake3
from pydantic import BaseModel, Field, ValidationError

from tasks.backup_errors import CorruptObject, UnsafePath

MANIFEST_VERSION = 1
REDIS_EXPORT_NAME = "redis-export.jsonl"


class FileEntry(BaseModel):
    """One regular file of a snapshot: where it goes, what it is, and the chunks that make it."""

    path: str
    type: str = "file"
    size: int
    mode: int = 0o644
    mtime_ns: int | None = None
    etag: str | None = None
    hash: str
    chunks: list[str]


class SourceInfo(BaseModel):
    name: str
    kind: str  # "storage" or "redis"
    url: str


class Manifest(BaseModel):
    version: int = MANIFEST_VERSION
    time: datetime
    parent: str | None = None
    tool: str
    hostname: str = ""
    tags: list[str] = Field(default_factory=list)
    sources: list[SourceInfo]
    newest_data_time: datetime | None = None
    files: list[FileEntry]
    totals: dict[str, int] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @property
    def referenced_chunks(self) -> set[str]:
        return {c for f in self.files for c in f.chunks}


def snapshot_id(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def parse_manifest(data: bytes, name: str, expected_id: str | None = None) -> Manifest:
    """Parse and check one manifest; a bad one is a `CorruptObject` naming it (never half-trusted)."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptObject(f"snapshot manifest {name} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("version") != MANIFEST_VERSION:
        version = raw.get("version") if isinstance(raw, dict) else None
        raise CorruptObject(f"snapshot manifest {name}: unknown schema version {version!r}")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise CorruptObject(f"snapshot manifest {name} does not match schema v1: {exc.errors()[0]}") from None
    if expected_id is not None and snapshot_id(data) != expected_id:
        raise CorruptObject(f"snapshot manifest {name}: content hash does not match its name (altered or torn)")
    return manifest


def safe_relative_path(path: str) -> str:
    """The path if it stays inside a restore target, else `UnsafePath` naming it."""
    if not path or "\x00" in path or "\\" in path:
        raise UnsafePath(f"manifest path {path!r} is empty or holds NUL/backslash characters")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise UnsafePath(f"manifest path {path!r} is absolute; refusing to write outside the target")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"manifest path {path!r} has an empty, '.' or '..' component; refusing to escape the target")
    return path


def unrestorable_name(rel: str) -> str | None:
    """Why a source file's name cannot go into a snapshot, or None. Checked at backup time: a
    name restore would refuse (or the manifest's JSON cannot hold) must be reported and left out,
    not found when the snapshot is needed."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    try:
        safe_relative_path(rel)
    except UnsafePath:
        return "name holds a backslash or NUL, which restore refuses"
    return None


def printable_name(rel: str) -> str:
    """A name as text that JSON, logs and artifacts can carry (undecodable bytes as \\xNN)."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_restorable(manifest: Manifest) -> None:
    """Every entry is a regular file with a safe path; checked before restore writes anything."""
    for entry in manifest.files:
        if entry.type != "file":
            raise UnsafePath(f"manifest entry {entry.path!r} is a {entry.type}, not a regular file; links are refused")
        safe_relative_path(entry.path)


def utcnow() -> datetime:
    return datetime.now(UTC)
