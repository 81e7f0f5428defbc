"""What a replication run must do, decided from two listings: pure logic, no network.

An object is in sync only when sizes match *and* a checksum matches (never mtime, never size
alone): both ETags plain MD5 and equal, or the destination's own metadata (written when this
project copied it) records the source's current ETag and a destination ETag of the expected form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.errors import NonRetryableError
from tasks.batching import batches_by_size
from tasks.streamed_body import plain_md5_etag

# User metadata this project writes on every object it copies (S3 returns the keys lower-cased).
META_SOURCE_ETAG = "llmr-source-etag"
META_SHA256 = "llmr-sha256"
META_MD5 = "llmr-md5"
META_PARTS = "llmr-parts"  # "<count>:<part size>" for objects written in parts
META_RCLONE_MD5 = "md5chksum"  # base64 MD5, the key rclone reads for multipart objects
# A single PUT streamed from a source written in parts learns its MD5 only as the last byte goes
# out, after the metadata was sent: that MD5 is then the object's tag TAG_MD5, and the metadata
# says so. Listings merge the tag into the metadata as META_MD5.
META_MD5_IN_TAG = "llmr-md5-in-tag"
TAG_MD5 = "llmr-md5"


@dataclass(frozen=True)
class ObjectInfo:
    """One object of a listing; ``key`` is relative to the location's prefix."""

    key: str
    size: int
    etag: str
    last_modified: float  # epoch seconds

    @property
    def plain_md5(self) -> bool:
        """A single-part ETag is the MD5 of the bytes, computed by the store."""
        return plain_md5_etag(self.etag)


@dataclass
class Listing:
    """A listing and whether it is known to be complete: deletes need a complete one."""

    objects: dict[str, ObjectInfo] = field(default_factory=dict)
    complete: bool = True
    error: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects.values())


@dataclass
class Plan:
    copy: list[ObjectInfo] = field(default_factory=list)  # source objects to copy
    delete: list[ObjectInfo] = field(default_factory=list)  # destination objects to delete
    in_sync: list[ObjectInfo] = field(default_factory=list)
    needs_metadata: list[str] = field(default_factory=list)  # keys whose ETags are not comparable
    delete_blocked: str | None = None  # why deletes are skipped this run, if they are

    @property
    def copy_bytes(self) -> int:
        return sum(o.size for o in self.copy)


class DeleteGuardTripped(NonRetryableError):
    """The planned deletes exceed max_delete_count or max_delete_fraction: nothing was deleted."""


def etags_decide(src: ObjectInfo, dst: ObjectInfo) -> bool | None:
    """True/False when the listing alone decides whether ``dst`` holds ``src``'s bytes; None when
    the destination's metadata must be read (a multipart ETag on either side)."""
    if src.size != dst.size:
        return False
    if src.plain_md5 and dst.plain_md5:
        return src.etag == dst.etag
    return None


def metadata_says_in_sync(src: ObjectInfo, dst: ObjectInfo, metadata: dict[str, str]) -> bool:
    """The destination records the source ETag it was copied from, and its own ETag has the form
    that copy produced (plain MD5 = the recorded MD5, or ``-<parts>`` with the recorded count)."""
    if src.size != dst.size or metadata.get(META_SOURCE_ETAG) != src.etag:
        return False
    if dst.plain_md5:
        return metadata.get(META_MD5) == dst.etag
    count = (metadata.get(META_PARTS) or "").partition(":")[0]
    return bool(count) and dst.etag.endswith(f"-{count}")


def plan_replication(
    source: Listing,
    destination: Listing,
    *,
    delete: bool,
    destination_metadata: dict[str, dict[str, str]] | None = None,
) -> Plan:
    """Diff two listings. ``destination_metadata`` (key -> user metadata) settles the keys that
    a first call returned in ``needs_metadata``; keys still unsettled are copied (never assumed equal)."""
    metadata = destination_metadata or {}
    plan = Plan()
    for key, src in source.objects.items():
        dst = destination.objects.get(key)
        if dst is None:
            plan.copy.append(src)
            continue
        verdict = etags_decide(src, dst)
        if verdict is None:
            if key in metadata:
                verdict = metadata_says_in_sync(src, dst, metadata[key])
            elif destination_metadata is None:
                plan.needs_metadata.append(key)
                continue
            else:
                verdict = False
        (plan.in_sync if verdict else plan.copy).append(src)
    if delete:
        extra = [dst for key, dst in destination.objects.items() if key not in source.objects]
        if not source.complete or not destination.complete:
            which = "source" if not source.complete else "destination"
            err = source.error if not source.complete else destination.error
            plan.delete_blocked = f"{which} listing incomplete ({err}); deleting nothing this run"
        else:
            plan.delete = extra
    return plan


def check_delete_guard(plan: Plan, destination_count: int, *, max_count: int, max_fraction: float) -> None:
    """Raise before anything is deleted when the planned deletes are too many."""
    n = len(plan.delete)
    if n == 0:
        return
    fraction = n / destination_count if destination_count else 1.0
    if n > max_count:
        raise DeleteGuardTripped(
            f"max_delete_count: this run would delete {n} objects (limit {max_count}); nothing was deleted"
        )
    if fraction > max_fraction:
        raise DeleteGuardTripped(
            f"max_delete_fraction: this run would delete {n} of {destination_count} destination objects "
            f"({fraction:.0%}, limit {max_fraction:.0%}); nothing was deleted"
        )


def batches(objects: list[ObjectInfo], *, max_objects: int, max_bytes: int) -> list[list[ObjectInfo]]:
    """Split work into task-run-sized batches in key order: many objects per task run, bounded bytes."""
    return batches_by_size(sorted(objects, key=lambda o: o.key), max_items=max_objects, max_bytes=max_bytes)
