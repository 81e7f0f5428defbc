"""Copy objects between two S3 stores and verify each one end to end.

Small objects: one GET, MD5 + SHA-256 of the bytes read (the MD5 must equal a plain source ETag),
one PUT with Content-MD5 and the hashes in user metadata; the ETag the destination computed over
the bytes it stored must equal our MD5, otherwise the object is read back and its SHA-256 compared.
Medium objects (up to the multipart threshold): one GET streamed into one PUT through
``VerifyingReader``, which checks the source's own checksums before the last block leaves; the
destination's ETag must equal the MD5 of the bytes read (part and whole-object MD5s in one pass:
``tasks.twin_md5``). A source written in parts has no MD5 to
send up front, so that MD5 is recorded as the object's ``llmr-md5`` tag after the check.
Large objects: the source is streamed part by part (never whole in memory); each part's MD5 is
checked against the ETag the destination computed for it, the completed object's ETag against
the MD5-of-MD5s we computed, and the full-object MD5 against a plain source ETag before
CompleteMultipartUpload (the part MD5s and that MD5 come out of one pass), so a copy that does
not verify never becomes visible. A source written
in parts whose store reports their size is copied in those same parts and hashed nowhere here:
the destination's part ETags (its MD5s of the bytes it stored) must rebuild the source's ETag
(the source store's MD5s of its bytes) before CompleteMultipartUpload. On moto that costs the
destination more than one PUT does, which is why objects below the threshold keep one PUT.

Single PUT and CompleteMultipartUpload are atomic, so the destination never shows a partial object.
If a check fails *after* the write (an ETag that matches neither our MD5 nor a read-back hash),
the destination object is deleted and the object reported as failed; the next run copies it again.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from threading import BoundedSemaphore
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tasks.adaptive_concurrency import AdaptiveLimiter, WireStats
from tasks.copy_breaker import REFUSALS, CopyBreaker
from tasks.multipart_resume import ResumeRecord, ResumeStore
from tasks.opaque_etags import UnsupportedEncryption, refuse_opaque_object
from tasks.part_streaming import (
    MIN_PART,
    ByteBudget,
    PartBuffer,
    PartHasher,
    PartLayout,
    composite_etag,
    etag_part_count,
    guessed_part_sizes,
    plan_parts,
    readinto_exact,
    source_part_size,
)
from tasks.replication_plan import (
    META_MD5,
    META_MD5_IN_TAG,
    META_PARTS,
    META_RCLONE_MD5,
    META_SHA256,
    META_SOURCE_ETAG,
    TAG_MD5,
    ObjectInfo,
)
from tasks.retry_policy import backoff_delays
from tasks.s3_location import S3Location
from tasks.streamed_body import (
    ExactReader,
    VerificationFailed,
    VerifyingReader,
    check_source_bytes,
    check_source_parts,
    plain_md5_etag,
)
from tasks.twin_md5 import parts_and_whole_md5

__all__ = ["CopySettings", "ExactReader", "ObjectCopier", "UnsupportedEncryption", "VerificationFailed", "copy_objects",
           "socket_stream"]

MIB = 1024 * 1024


class SourceVanished(Exception):
    """The source object was deleted after the listing; nothing to copy."""


TAGGING_UNSUPPORTED = {"NotImplemented", "MethodNotAllowed", "AccessDenied", "InvalidRequest"}


@dataclass
class CopySettings:
    multipart_threshold: int = 200 * MIB  # above: multipart (resumable); rclone's upload_cutoff is 200 MiB too
    in_memory_max: int = 4 * MIB  # up to this, one GET body in memory; above, streamed GET -> PUT
    part_size: int = 8 * MIB
    concurrency: int = 16
    large_concurrency: int = 4  # objects streamed in parts at once
    part_concurrency: int = 4  # parts of one object uploading at once
    buffer_bytes: int = 64 * MIB  # part buffers alive at once, all large copies of a batch together
    max_part_size: int = 64 * MIB  # largest source part size copied as is (larger: part_size parts)
    verify_readback: bool = False  # also GET every copied object and compare SHA-256
    object_attempts: int = 3  # whole-object retries on top of botocore's per-request retries
    max_request_attempts: int = 8
    abort_after_refusals: int = 20  # refusals in a row that stop the batch (``tasks.copy_breaker``); 0: never
    resume_dir: Path = Path(".state/replication/uploads")


@dataclass
class CopyOutcome:
    key: str
    size: int
    status: str  # copied | vanished | failed | not_attempted (the batch stopped: ``BatchResult.aborted``)
    error: str | None = None
    code: str | None = None  # the store's error code, when it answered one
    operation: str | None = None  # the request it refused
    verified_at: float | None = None
    lag_s: float | None = None
    parts_resumed: int = 0
    attempts: int = 1
    unchecked: str | None = None  # why the bytes read could not be checked against the source's own checksums


@dataclass
class BatchResult:
    outcomes: list[CopyOutcome] = field(default_factory=list)
    retries: int = 0
    throttles: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    lowest_concurrency: int = 0
    aborted: str | None = None  # why the batch stopped before trying every object


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _etag(value: str | None) -> str:
    return (value or "").strip('"')


def _is_not_found(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in {"NoSuchKey", "404", "NotFound"}


class ObjectCopier:
    """Copies one source object to the destination; thread-safe, shared by a batch's workers."""

    def __init__(self, source: S3Location, destination: S3Location, settings: CopySettings, stats: WireStats) -> None:
        self.source = source
        self.destination = destination
        self.settings = settings
        pool = settings.concurrency + 4
        pool += settings.large_concurrency * settings.part_concurrency
        self.src = source.client(max_attempts=settings.max_request_attempts, max_pool_connections=pool, observer=stats.observe)
        self.dst = destination.client(max_attempts=settings.max_request_attempts, max_pool_connections=pool, observer=stats.observe)
        self.resume = ResumeStore(settings.resume_dir)
        self.budget = ByteBudget(max(settings.buffer_bytes, MIN_PART))
        self.part_pool = ThreadPoolExecutor(
            max_workers=max(1, settings.large_concurrency * settings.part_concurrency), thread_name_prefix="part"
        )
        self._record_lock = threading.Lock()
        self.tagging = True  # False once the destination refuses object tagging

    def close(self) -> None:
        self.part_pool.shutdown(wait=True)

    # -- small objects ---------------------------------------------------------------------
    def copy_small(self, obj: ObjectInfo) -> CopyOutcome:
        try:
            got = self.src.get_object(Bucket=self.source.bucket, Key=self.source.full_key(obj.key))
        except ClientError as exc:
            if _is_not_found(exc):
                raise SourceVanished(obj.key) from None
            raise
        with closing(got["Body"]) as stream:
            refuse_opaque_object(obj.key, got, "source")
            body = stream.read()
        src_etag = _etag(got.get("ETag"))
        if len(body) != got.get("ContentLength", len(body)):
            raise VerificationFailed(f"short read from source: {len(body)} of {got.get('ContentLength')} bytes")
        md5 = hashlib.md5(body)
        sha = hashlib.sha256(body).hexdigest()
        recorded_sha = (got.get("Metadata") or {}).get(META_SHA256)
        check_source_bytes(md5.hexdigest(), src_etag, recorded_sha, sha)
        one_part = etag_part_count(src_etag) == 1  # its only part is the whole object
        unchecked = check_source_parts([md5.digest()], [], PartLayout(len(body), max(len(body), 1), 1, one_part, one_part),
                                       src_etag, recorded_sha256=recorded_sha)
        metadata = {META_SOURCE_ETAG: src_etag, META_SHA256: sha, META_MD5: md5.hexdigest()}
        key = self.destination.full_key(obj.key)
        extra: dict[str, Any] = {}
        if got.get("ContentType"):
            extra["ContentType"] = got["ContentType"]
        put = self.dst.put_object(
            Bucket=self.destination.bucket, Key=key, Body=body, ContentMD5=_b64(md5.digest()), Metadata=metadata, **extra
        )
        self._refuse_opaque_destination(obj.key, key, put)
        etag_ok = _etag(put.get("ETag")) == md5.hexdigest()
        if not etag_ok or self.settings.verify_readback:
            self._verify_by_readback(key, sha, len(body))
        return self._done(obj, got, unchecked=unchecked)

    def _verify_by_readback(self, key: str, expected_sha: str, size: int) -> None:
        """Hash what the destination returns; on mismatch remove it (it must not stay visible)."""
        got = self.dst.get_object(Bucket=self.destination.bucket, Key=key)
        h = hashlib.sha256()
        n = 0
        for chunk in got["Body"].iter_chunks(MIB):
            h.update(chunk)
            n += len(chunk)
        if n != size or h.hexdigest() != expected_sha:
            self.dst.delete_object(Bucket=self.destination.bucket, Key=key)
            raise VerificationFailed(f"destination bytes differ from the source after the write ({n} bytes read back); removed")

    def _done(self, obj: ObjectInfo, got: dict[str, Any], parts_resumed: int = 0, unchecked: str | None = None) -> CopyOutcome:
        now = time.time()
        written = got.get("LastModified")
        source_time = written.timestamp() if written is not None else obj.last_modified
        return CopyOutcome(
            key=obj.key, size=obj.size, status="copied", verified_at=now, lag_s=max(0.0, now - source_time),
            parts_resumed=parts_resumed, unchecked=unchecked,
        )

    # -- medium objects: one streamed PUT ------------------------------------------------
    def _head_source(self, key: str, skey: str) -> dict:
        """The source object's HEAD; a source deleted since the listing is SourceVanished."""
        try:
            head = self.src.head_object(Bucket=self.source.bucket, Key=skey)
        except ClientError as exc:
            if _is_not_found(exc):
                raise SourceVanished(key) from None
            raise
        refuse_opaque_object(key, head, "source")
        return head

    def _refuse_opaque_destination(self, key: str, dkey: str, written: dict[str, Any], *, upload_id: str | None = None) -> None:
        """A destination that encrypted the write with SSE-KMS (its bucket default) gives it an
        ETag that is not an MD5: undo the write (delete the object, or abort ``upload_id``), and
        say so rather than "ETag mismatch"."""
        try:
            refuse_opaque_object(key, written, "destination")
        except UnsupportedEncryption:
            if upload_id is None:
                self.dst.delete_object(Bucket=self.destination.bucket, Key=dkey)
            else:
                self.dst.abort_multipart_upload(Bucket=self.destination.bucket, Key=dkey, UploadId=upload_id)
            raise

    def copy_streamed(self, obj: ObjectInfo) -> CopyOutcome:
        """One GET streamed straight into one PUT (never whole in memory), every byte hashed on the
        way. A source with a plain ETag gives its MD5 up front: it goes as Content-MD5 (the store
        refuses other bytes) and as ``llmr-md5``. A source written in parts is checked as it is
        read (its part MD5s must rebuild its ETag before the last block is sent, or the PUT never
        completes); its MD5 is known only after the PUT, so it is recorded as the object's
        ``llmr-md5`` tag. Either way the destination's ETag (its own MD5 of what it stored) must
        equal the MD5 of the bytes read, or the object is removed."""
        skey, dkey = self.source.full_key(obj.key), self.destination.full_key(obj.key)
        head = self._head_source(obj.key, skey)
        src_etag = _etag(head.get("ETag"))
        size = int(head["ContentLength"])
        recorded_sha = (head.get("Metadata") or {}).get(META_SHA256)
        # no part buffers here, so a source part of any size is hashed as it passes
        layout = self._source_layout(skey, size, src_etag, max_part=size) if etag_part_count(src_etag) else PartLayout(size, max(size, 1), 1)
        known_md5 = src_etag if plain_md5_etag(src_etag) else None
        if known_md5 is None and not self.tagging:
            known_md5 = self._hash_source(skey, head, layout, src_etag, recorded_sha)  # a second read, as the tag cannot hold the MD5
        metadata = {META_SOURCE_ETAG: src_etag}
        metadata.update({META_MD5: known_md5} if known_md5 else {META_MD5_IN_TAG: "1"})
        if recorded_sha:
            metadata[META_SHA256] = recorded_sha
        extra: dict[str, Any] = {"ContentType": head["ContentType"]} if head.get("ContentType") else {}
        if known_md5:
            extra["ContentMD5"] = _b64(bytes.fromhex(known_md5))
        got = self.src.get_object(Bucket=self.source.bucket, Key=skey, IfMatch=head["ETag"])
        with closing(got["Body"]) as body:
            reader = VerifyingReader(socket_stream(body), layout, source_etag=src_etag, recorded_sha256=recorded_sha)
            try:
                put = self.dst.put_object(
                    Bucket=self.destination.bucket, Key=dkey, Body=reader, ContentLength=size, Metadata=metadata, **extra,
                )
            except (BotoCoreError, ClientError, OSError) as exc:
                if reader.error is not None:  # botocore reports a body that raised as one it could not rewind
                    raise reader.error from exc
                raise
        self._refuse_opaque_destination(obj.key, dkey, put)
        md5_hex = reader.md5_hex
        if _etag(put.get("ETag")) != md5_hex:
            self.dst.delete_object(Bucket=self.destination.bucket, Key=dkey)
            raise VerificationFailed(f"destination ETag {put.get('ETag')} is not the MD5 {md5_hex} of the source bytes; removed")
        if known_md5 is None and not self._tag_md5(dkey, md5_hex):
            return self.copy_streamed(obj)  # tagging refused: written again, its MD5 in the metadata
        if self.settings.verify_readback:
            self._verify_parts_by_readback(dkey, PartLayout(size, max(size, 1), 1), md5_hex + "-1", plain=True)
        return self._done(obj, got, unchecked=reader.unchecked)

    def _tag_md5(self, dkey: str, md5_hex: str) -> bool:
        """Record the verified MD5 as the object's ``llmr-md5`` tag (tagging writes no bytes and no
        new version). A store without tagging gets the object again through the two-read path,
        whose MD5 goes into the metadata, and so do the batch's later objects."""
        try:
            self.dst.put_object_tagging(
                Bucket=self.destination.bucket, Key=dkey, Tagging={"TagSet": [{"Key": TAG_MD5, "Value": md5_hex}]}
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in TAGGING_UNSUPPORTED:
                raise
            self.tagging = False
            return False
        return True

    def _hash_source(self, skey: str, head: dict[str, Any], layout: PartLayout, src_etag: str, recorded_sha: str | None) -> str:
        """One read of the source, to nowhere: its MD5 (for Content-MD5 and metadata), checked by
        the same reader a streamed PUT uses. Only for destinations that refuse tagging."""
        got = self.src.get_object(Bucket=self.source.bucket, Key=skey, IfMatch=head["ETag"])
        with closing(got["Body"]) as body:
            reader = VerifyingReader(socket_stream(body), layout, source_etag=src_etag, recorded_sha256=recorded_sha)
            while reader.read(MIB):
                pass
        return reader.md5_hex

    # -- large objects ---------------------------------------------------------------------
    def _source_layout(self, skey: str, size: int, src_etag: str, *, max_part: int | None = None) -> PartLayout:
        """Copy in the source's own part layout when it can be known (so its ETag verifies what we
        read), else in ``part_size`` parts. The layout is confirmed when the store reports part 1's
        size (or there is one part); otherwise it is the likeliest of a few guesses, and the others
        (or a confirmed size too large for the part buffers) are hashed on the side."""
        s = self.settings
        first: int | None = None
        if etag_part_count(src_etag):
            # S3 (and MinIO, moto) answer a HEAD for part 1 with that part's length. No If-Match: moto
            # compares it with the part's own ETag, and a layout from a replaced source can only make
            # the composite check fail, never pass.
            try:
                one = self.src.head_object(Bucket=self.source.bucket, Key=skey, PartNumber=1)
                if int(one.get("PartsCount") or 0) > 0 and int(one["ContentLength"]) < size:
                    first = int(one["ContentLength"])
            except ClientError as exc:
                if _is_not_found(exc):
                    raise SourceVanished(skey) from None
        if max_part is None:  # parts go through buffers: at most what the budget holds
            max_part = min(s.max_part_size, s.buffer_bytes)
        part = source_part_size(size, src_etag, first)
        confirmed = etag_part_count(src_etag) == 1 or (first is not None and part == first)
        layout = plan_parts(size, s.part_size, source_part=part, max_part=max(MIN_PART, max_part), confirmed=confirmed)
        candidates = [part] if confirmed and part else guessed_part_sizes(size, src_etag)
        others = tuple(p for p in candidates if not (layout.matches_source and p == layout.part_size))
        return replace(layout, alternates=others, confirmed=confirmed)

    @staticmethod
    def _store_checkable(layout: PartLayout, src_etag: str, recorded_sha: str | None) -> bool:
        """A source written in parts whose part size its store confirmed can be copied in those
        same parts with no hashing here: the destination computes each part's MD5 over the bytes
        it stores, and those MD5s rebuild the source's ETag (which the source store computed over
        its bytes) only if every byte arrived as the source holds it. A guessed layout, a plain
        ETag or a recorded SHA-256 still need our own hashes."""
        return (layout.confirmed and layout.matches_source and not layout.alternates and not recorded_sha
                and etag_part_count(src_etag) == layout.count)

    def copy_large(self, obj: ObjectInfo, *, store_checked: bool = True) -> CopyOutcome:
        """One GET streams the source in order; each part is read straight into its own buffer
        (held under the batch's byte budget) and uploaded by the part pool while the next part is
        read. Nothing becomes visible before CompleteMultipartUpload, and that waits for the check:
        either our MD5 of each part (sent as Content-MD5, and equal to the part's ETag), or, for a
        source copied in its own confirmed parts, the destination's part ETags rebuilding the
        source ETag (no byte hashed here; a miss aborts the upload and copies again the first way,
        whose checks say whether the read or the write was wrong)."""
        dkey = self.destination.full_key(obj.key)
        skey = self.source.full_key(obj.key)
        head = self._head_source(obj.key, skey)
        src_etag = _etag(head.get("ETag"))
        size = int(head["ContentLength"])
        layout = self._source_layout(skey, size, src_etag)
        recorded_sha = (head.get("Metadata") or {}).get(META_SHA256)
        trust_stores = store_checked and self._store_checkable(layout, src_etag, recorded_sha)
        record = self._resumable(dkey, src_etag, size, layout.part_size)
        if record is None:
            metadata = {META_SOURCE_ETAG: src_etag, META_PARTS: f"{layout.count}:{layout.part_size}"}
            if plain_md5_etag(src_etag):
                metadata[META_RCLONE_MD5] = _b64(bytes.fromhex(src_etag))
                metadata[META_MD5] = src_etag
            if recorded_sha:
                metadata[META_SHA256] = recorded_sha
            extra = {"ContentType": head["ContentType"]} if head.get("ContentType") else {}
            created = self.dst.create_multipart_upload(Bucket=self.destination.bucket, Key=dkey, Metadata=metadata, **extra)
            self._refuse_opaque_destination(obj.key, dkey, created, upload_id=created["UploadId"])
            record = ResumeRecord(self.destination.store_id, dkey, created["UploadId"], src_etag, size, layout.part_size)
            self.resume.save(record)
        resumed = len(record.parts)
        got = self.src.get_object(Bucket=self.source.bucket, Key=skey, IfMatch=head["ETag"])
        body = got["Body"]
        stream = socket_stream(body)
        # Whole-object hashes only when something can check them: a plain source ETag (MD5) or a
        # SHA-256 the source recorded. Otherwise the part MD5s are the end-to-end check. A plain
        # ETag needs the whole-object MD5 beside the part MD5s: both in one pass (tasks.twin_md5)
        # in this reading thread, which hands each part's MD5 to its upload.
        md5s = parts_and_whole_md5(layout.part_size, size) if etag_part_count(src_etag) is None else None
        full_sha = hashlib.sha256() if recorded_sha else None
        alternates = [PartHasher(p) for p in layout.alternates]  # other layouts the source may have
        part_md5s: list[bytes | None] = [None] * layout.count
        uploads: list[Future] = []
        part_failed = threading.Event()
        read = 0

        def upload(number: int, buf: PartBuffer, held: int, md5: bytes | None) -> None:
            try:
                if trust_stores:
                    if number in record.parts:  # uploaded by an earlier, interrupted run; the ETag check covers it
                        part_md5s[number - 1] = bytes.fromhex(record.parts[number])
                        return
                    up = self.dst.upload_part(Bucket=self.destination.bucket, Key=dkey, UploadId=record.upload_id,
                                              PartNumber=number, Body=buf)
                    stored = _etag(up.get("ETag"))
                    if not plain_md5_etag(stored):
                        raise VerificationFailed(f"part {number}: destination ETag {up.get('ETag')} is not an MD5")
                    md5 = bytes.fromhex(stored)
                    part_md5s[number - 1] = md5
                else:
                    if md5 is None:
                        md5 = hashlib.md5(buf.view).digest()
                    part_md5s[number - 1] = md5
                    if record.parts.get(number) == md5.hex():
                        return  # uploaded and verified by an earlier, interrupted run
                    up = self.dst.upload_part(
                        Bucket=self.destination.bucket, Key=dkey, UploadId=record.upload_id, PartNumber=number,
                        Body=buf, ContentMD5=_b64(md5),
                    )
                    if _etag(up.get("ETag")) != md5.hex():
                        raise VerificationFailed(f"part {number}: destination computed ETag {up.get('ETag')} for bytes with MD5 {md5.hex()}")
                with self._record_lock:
                    record.parts[number] = md5.hex()
                    self.resume.save(record)
            except BaseException:
                part_failed.set()
                raise
            finally:
                buf.close()
                self.budget.release(held)

        try:
            for number in range(1, layout.count + 1):
                _, want = layout.bounds(number)
                held = self.budget.acquire(want)
                try:
                    buf = PartBuffer(want)
                except BaseException:
                    self.budget.release(held)
                    raise
                try:
                    n = readinto_exact(stream, buf.view)
                    read += n
                    if n != want:
                        raise VerificationFailed(f"source stream ended after {read} of {size} bytes")
                    if md5s is not None:
                        md5s.update(buf.view)
                    if full_sha is not None:
                        full_sha.update(buf.view)
                    for hasher in alternates:
                        hasher.update(buf.view)
                    uploads.append(self.part_pool.submit(upload, number, buf, held, md5s.part_digest(number) if md5s else None))
                except BaseException:
                    buf.close()
                    self.budget.release(held)
                    raise
                if part_failed.is_set():
                    break
        finally:
            body.close()
            errors = [f.exception() for f in uploads if f.exception() is not None]
        if errors:
            raise errors[0]
        if read != size:
            raise VerificationFailed(f"read {read} of {size} source bytes")
        digests = [d for d in part_md5s if d is not None]
        expected = composite_etag(digests)
        if trust_stores:
            if expected != src_etag:  # the read or the write went wrong: our own hashes tell which
                self._abort(record)
                return self.copy_large(obj, store_checked=False)
            unchecked = None
        else:
            check_source_bytes(md5s.whole_digest().hex() if md5s else None, src_etag, recorded_sha,
                               full_sha.hexdigest() if full_sha else None)
            unchecked = check_source_parts(digests, [h.digests() for h in alternates], layout, src_etag,
                                           recorded_sha256=recorded_sha)
        parts = [{"PartNumber": i, "ETag": f'"{d.hex()}"'} for i, d in enumerate(digests, 1)]
        try:
            done = self.dst.complete_multipart_upload(
                Bucket=self.destination.bucket, Key=dkey, UploadId=record.upload_id, MultipartUpload={"Parts": parts}
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                self.resume.delete(record.store_id, dkey)  # completed by a killed run, or aborted: start over
            raise
        self.resume.delete(record.store_id, dkey)
        self._refuse_opaque_destination(obj.key, dkey, done)  # S3 says so at creation already; some stores only here
        if _etag(done.get("ETag")) != expected or self.settings.verify_readback:
            self._verify_parts_by_readback(dkey, layout, expected)
        return self._done(obj, got, parts_resumed=resumed, unchecked=unchecked)

    def _verify_parts_by_readback(self, key: str, layout: PartLayout, expected: str, *, plain: bool = False) -> None:
        """Read the destination back in the same layout and compare the composite MD5; on a
        mismatch remove it (it must not stay visible)."""
        got = self.dst.get_object(Bucket=self.destination.bucket, Key=key)
        digests: list[bytes] = []
        n = 0
        with closing(got["Body"]) as body:
            for number in range(1, layout.count + 1):
                _, want = layout.bounds(number)
                h = hashlib.md5()
                left = want
                while left:
                    chunk = body.read(min(left, MIB))
                    if not chunk:
                        break
                    h.update(chunk)
                    left -= len(chunk)
                    n += len(chunk)
                digests.append(h.digest())
            extra = body.read(1)
        got_etag = digests[0].hex() + "-1" if plain else composite_etag(digests)
        if n != layout.size or extra or got_etag != expected:
            self.dst.delete_object(Bucket=self.destination.bucket, Key=key)
            raise VerificationFailed(f"destination bytes differ from the source after the write ({n} bytes read back); removed")

    def _resumable(self, dkey: str, src_etag: str, size: int, part_size: int) -> ResumeRecord | None:
        record = self.resume.load(self.destination.store_id, dkey)
        if record is None:
            return None
        if (record.source_etag, record.size, record.part_size) != (src_etag, size, part_size):
            self._abort(record)
            return None
        try:  # the upload must still exist, and hold every part we recorded with the same ETag
            listed = self.dst.list_parts(Bucket=self.destination.bucket, Key=dkey, UploadId=record.upload_id)
        except ClientError:
            self.resume.delete(record.store_id, dkey)
            return None
        on_store = {p["PartNumber"]: _etag(p["ETag"]) for p in listed.get("Parts", [])}
        record.parts = {n: m for n, m in record.parts.items() if on_store.get(n) == m}
        return record

    def _abort(self, record: ResumeRecord) -> None:
        try:
            self.dst.abort_multipart_upload(Bucket=self.destination.bucket, Key=record.key, UploadId=record.upload_id)
        except ClientError:
            pass
        self.resume.delete(record.store_id, record.key)

    # -- one object, with whole-object retries ---------------------------------------------
    def copy(self, obj: ObjectInfo, stats: WireStats) -> CopyOutcome:
        s = self.settings
        method = self.copy_large if obj.size > s.multipart_threshold else self.copy_streamed if obj.size > s.in_memory_max else self.copy_small
        delays = backoff_delays(self.settings.object_attempts, base_s=0.5, cap_s=10)
        last_error = ""
        code = operation = None
        for attempt in range(1, self.settings.object_attempts + 1):
            try:
                outcome = method(obj)
                outcome.attempts = attempt
                return outcome
            except SourceVanished:
                return CopyOutcome(key=obj.key, size=obj.size, status="vanished", attempts=attempt)
            except UnsupportedEncryption as exc:
                last_error = str(exc)
                break  # the same answer on every attempt
            except ClientError as exc:
                err = exc.response.get("Error", {})
                code, operation = err.get("Code"), exc.operation_name
                last_error = f"{code}: {err.get('Message')}"
                if code in REFUSALS:
                    break
            except (BotoCoreError, VerificationFailed, OSError, ValueError) as exc:
                code = operation = None
                last_error = f"{type(exc).__name__}: {exc}"
            if attempt <= len(delays):
                stats.add_retry()
                time.sleep(delays[attempt - 1])
        return CopyOutcome(key=obj.key, size=obj.size, status="failed", error=last_error[:500], attempts=attempt,
                           code=code, operation=operation)


def socket_stream(body: Any) -> Any:
    """The http.client response under botocore's StreamingBody, so parts are read from the socket
    straight into their buffers (urllib3's ``readinto`` reads into a temporary and copies); falls
    back to the body itself when the layers are not the expected ones or the body is encoded."""
    raw = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    headers = getattr(raw, "headers", None) or {}
    if fp is not None and hasattr(fp, "readinto") and not headers.get("Content-Encoding"):
        return fp
    return body


def copy_objects(
    source: S3Location, destination: S3Location, objects: list[ObjectInfo], settings: CopySettings
) -> BatchResult:
    """Copy a batch with a bounded, adaptive worker pool; every object gets an outcome. Once the
    store has refused ``settings.abort_after_refusals`` objects in a row, the objects not started
    yet are ``not_attempted`` and the result says why (``aborted``)."""
    limiter = AdaptiveLimiter(settings.concurrency)
    breaker = CopyBreaker(settings.abort_after_refusals)
    stats = WireStats(limiter=limiter)
    copier = ObjectCopier(source, destination, settings, stats)
    large_gate = BoundedSemaphore(max(1, settings.large_concurrency))

    def not_attempted(obj: ObjectInfo) -> CopyOutcome:
        return CopyOutcome(key=obj.key, size=obj.size, status="not_attempted", error=breaker.reason, attempts=0)

    def work(obj: ObjectInfo) -> CopyOutcome:
        if breaker.reason:
            return not_attempted(obj)
        large = obj.size > settings.in_memory_max
        if large:
            large_gate.acquire()
        try:
            with limiter:
                if breaker.reason:  # tripped while this one waited for a slot
                    return not_attempted(obj)
                outcome = copier.copy(obj, stats)
                breaker.record(outcome)
            if outcome.status == "copied" and outcome.attempts == 1:
                limiter.on_success()
            return outcome
        finally:
            if large:
                large_gate.release()

    # Large objects first: they take longest, so small ones fill the pool around them.
    ordered = sorted(objects, key=lambda o: -o.size)
    try:
        with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="replicate") as pool:
            outcomes = list(pool.map(work, ordered))
    finally:
        copier.close()
    return BatchResult(
        outcomes=outcomes, retries=stats.retries, throttles=stats.throttles, server_errors=stats.server_errors,
        connection_errors=stats.connection_errors, lowest_concurrency=limiter.lowest, aborted=breaker.reason,
    )
