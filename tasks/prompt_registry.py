"""A prompt registry on any fsspec file system (a StorageTarget): immutable numbered versions,
movable labels, an append-only audit log of every label move.

Layout below the registry root (default: `prompts/` in the region-a bucket, replicated to
region-b like any other data)::

    <name>/versions/000001.json   one immutable version (template, params, author, message, hash)
    <name>/audit/000001.json      one label move (label, from, to, who, when, why); labels are the
                                  replay of this log, so the log can never disagree with them
    <name>/results/<version>/<run>.json   outcome of a regression run for that version

Two writers: every object is written with an *exclusive create* (S3 conditional write
`If-None-Match: *`, `open(..., "xb")` on a local disk, a process lock in memory://). Version
and audit sequence numbers are claimed by creating the next file; a writer that loses the race
re-reads and tries the next number, and a label move that names the version it expects to move
*from* fails with `LabelConflict` instead of overwriting a move it did not see (compare-and-swap).
Nothing is ever overwritten or deleted, so no lock lease is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from datetime import datetime, timezone
from typing import Any

import fsspec
from pydantic import BaseModel, Field

from tasks.errors import ConfigurationError, LLMResilienceError, NonRetryableError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MEMORY_LOCK = threading.Lock()


class PromptNotFound(ConfigurationError):
    """Unknown prompt, version or label; the message names it."""


class LabelConflict(NonRetryableError):
    """Another writer moved the label first; re-read and decide again."""


class RegistryUnavailable(LLMResilienceError):
    """The registry cannot be reached and there is no cached copy to serve."""


class PromptVersion(BaseModel):
    name: str
    version: int
    template: str
    system: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    author: str = "unknown"
    message: str = ""
    created_at: datetime
    content_hash: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class LabelMove(BaseModel):
    seq: int
    label: str
    from_version: int | None
    to_version: int
    actor: str
    at: datetime
    reason: str


class RunRecord(BaseModel):
    version: int
    run_id: str
    passed: bool
    at: datetime
    summary: dict[str, Any] = Field(default_factory=dict)


def content_hash(template: str, system: str | None, params: dict[str, Any]) -> str:
    canonical = json.dumps({"template": template, "system": system, "params": params}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_exclusive(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """Write ``path`` only if it does not exist; False when someone else created it first."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in {"s3", "s3a"}:
        bucket, key, _ = fs.split_path(path)
        try:
            fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except Exception as exc:  # s3fs maps the 412 to an OSError subclass; check what it was
            text = f"{type(exc).__name__} {exc}"
            if "PreconditionFailed" in text or "412" in text or isinstance(exc, FileExistsError):
                return False
            raise
        fs.invalidate_cache(path)
        return True
    if protocol == "file":
        # Write a private temp file, then hard-link it into place: link() fails if the name
        # exists, and a reader never sees a half-written file (open("xb") would show it empty).
        fs.makedirs(fs._parent(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    with _MEMORY_LOCK:  # memory:// and other single-process file systems
        if fs.exists(path):
            return False
        fs.pipe_file(path, data)
        return True


class PromptRegistry:
    """Python API of the registry. Every method reads the store; nothing is cached here."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    @classmethod
    def from_target(cls, target: Any, prefix: str = "prompts") -> PromptRegistry:
        """A registry under ``prefix`` of a StorageTarget block."""
        return cls(target.filesystem(), target.path(prefix))

    # --- paths and reads
    def _dir(self, name: str, *parts: str) -> str:
        if not NAME_RE.match(name):
            raise ConfigurationError(f"prompt name {name!r} must match {NAME_RE.pattern}")
        return "/".join([self.root, name, *parts])

    def _numbered(self, name: str, kind: str) -> list[int]:
        try:
            entries = self.fs.ls(self._dir(name, kind), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        nums = []
        for entry in entries:
            base = entry.rstrip("/").rsplit("/", 1)[-1]
            if not base.endswith(".json"):
                continue
            stem = base.removesuffix(".json")
            if stem.isdigit():
                nums.append(int(stem))
        return sorted(nums)

    def _read_many(self, paths: list[str]) -> list[dict[str, Any]]:
        if not paths:
            return []
        blobs = self.fs.cat(paths)
        return [json.loads(blobs[p] if p in blobs else blobs[self.fs._strip_protocol(p)]) for p in paths]

    def prompts(self) -> list[str]:
        try:
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False, refresh=True))
        except FileNotFoundError:
            return []

    def versions(self, name: str) -> list[PromptVersion]:
        paths = [self._dir(name, "versions", f"{n:06d}.json") for n in self._numbered(name, "versions")]
        return [PromptVersion.model_validate(d) for d in self._read_many(paths)]

    def get_version(self, name: str, version: int) -> PromptVersion:
        path = self._dir(name, "versions", f"{version:06d}.json")
        try:
            return PromptVersion.model_validate_json(self.fs.cat_file(path))
        except FileNotFoundError:
            known = self._numbered(name, "versions")
            if not known:
                raise PromptNotFound(f"prompt {name!r} does not exist in the registry at {self.root}") from None
            raise PromptNotFound(f"prompt {name!r} has no version {version} (versions: {known})") from None

    def audit_log(self, name: str) -> list[LabelMove]:
        paths = [self._dir(name, "audit", f"{n:06d}.json") for n in self._numbered(name, "audit")]
        return [LabelMove.model_validate(d) for d in self._read_many(paths)]

    def labels(self, name: str) -> dict[str, int]:
        state: dict[str, int] = {}
        for move in self.audit_log(name):
            state[move.label] = move.to_version
        return state

    def resolve(self, ref: str) -> PromptVersion:
        """`name@label`, `name@3` or `name` (= `name@production`) to a version."""
        name, _, selector = ref.partition("@")
        selector = selector or "production"
        if selector.isdigit():
            return self.get_version(name, int(selector))
        labels = self.labels(name)
        if selector not in labels:
            if not self._numbered(name, "versions"):
                raise PromptNotFound(f"prompt {name!r} does not exist in the registry at {self.root}")
            raise PromptNotFound(f"prompt {name!r} has no label {selector!r} (labels: {sorted(labels) or 'none'})")
        return self.get_version(name, labels[selector])

    # --- writes
    def create_version(
        self, name: str, template: str, *, system: str | None = None, params: dict[str, Any] | None = None,
        author: str = "unknown", message: str = "",
    ) -> PromptVersion:
        """A new immutable version; the latest version is returned instead if its content is identical
        (so re-running a flow that creates a version is safe)."""
        params = dict(params or {})
        digest = content_hash(template, system, params)
        while True:
            existing = self._numbered(name, "versions")
            if existing:
                latest = self.get_version(name, existing[-1])
                if latest.content_hash == digest:
                    return latest
            number = (existing[-1] if existing else 0) + 1
            version = PromptVersion(
                name=name, version=number, template=template, system=system, params=params, author=author,
                message=message, created_at=_now(), content_hash=digest,
            )
            if create_exclusive(self.fs, self._dir(name, "versions", f"{number:06d}.json"),
                                version.model_dump_json().encode()):
                return version

    def move_label(
        self, name: str, label: str, version: int, *, actor: str, reason: str,
        expected_from: int | None | str = "any",
    ) -> LabelMove:
        """Point ``label`` at ``version``, appending the move to the audit log.

        ``expected_from`` (a version, or None for "label must not exist yet") makes the move a
        compare-and-swap: if another writer moved the label first, `LabelConflict` is raised.
        """
        if not NAME_RE.match(label):
            raise ConfigurationError(f"label {label!r} must match {NAME_RE.pattern}")
        self.get_version(name, version)  # raises PromptNotFound
        while True:
            log = self.audit_log(name)
            current, last = None, None
            for move in log:
                if move.label == label:
                    current, last = move.to_version, move
            if current == version and last is not None:
                return last  # already there (e.g. a retried task whose first try succeeded): no new entry
            if expected_from != "any" and current != expected_from:
                raise LabelConflict(
                    f"{name}@{label} is at version {current}, not {expected_from}: another writer moved it"
                )
            seq = (log[-1].seq if log else 0) + 1
            move = LabelMove(seq=seq, label=label, from_version=current, to_version=version, actor=actor,
                             at=_now(), reason=reason)
            if create_exclusive(self.fs, self._dir(name, "audit", f"{seq:06d}.json"), move.model_dump_json().encode()):
                return move
            if expected_from == "any":
                continue
            expected_from = current  # re-read: the CAS above fails if the other writer moved this label

    def record_run(self, name: str, version: int, run_id: str, passed: bool, summary: dict[str, Any]) -> RunRecord:
        record = RunRecord(version=version, run_id=run_id, passed=passed, at=_now(), summary=summary)
        path = self._dir(name, "results", f"{version:06d}", f"{record.at:%Y%m%dT%H%M%S%f}-{run_id}.json")
        create_exclusive(self.fs, path, record.model_dump_json().encode())
        return record

    def run_records(self, name: str) -> list[RunRecord]:
        try:
            paths = [p for p in self.fs.find(self._dir(name, "results")) if p.endswith(".json")]
        except FileNotFoundError:
            return []
        records = [RunRecord.model_validate(d) for d in self._read_many(paths)]
        return sorted(records, key=lambda r: r.at)

    def rollback_target(self, name: str, current: int) -> int | None:
        """The last known good `production` version: the most recent version other than ``current``
        that held `production` (by the audit log) and whose latest recorded run passed.

        Only former production versions qualify, so an ad-hoc run of an unreviewed candidate can
        never make it a rollback target; a former production version with no recorded run, or
        whose latest run failed, is not known good and is skipped. None: no rollback target.
        """
        latest: dict[int, RunRecord] = {}
        for record in self.run_records(name):
            latest[record.version] = record
        for version in former_production_versions(self.audit_log(name), current):
            if version in latest and latest[version].passed:
                return version
        return None


def former_production_versions(log: list[LabelMove], current: int) -> list[int]:
    """Versions that held `production`, most recently held first, without ``current``."""
    held = [m.to_version for m in sorted(log, key=lambda m: m.seq) if m.label == "production"]
    return list(dict.fromkeys(v for v in reversed(held) if v != current))
