"""Copy objects between two S3 stores and verify each one end to end.

Small objects: one GET, MD5 + SHA-256 of the bytes read (the MD5 must equal a plain source ETag),
one PUT with Content-MD5 and the hashes in user metadata; the ETag the destination computed over
the bytes it stored must equal our MD5, otherwise the object is read back and its SHA-256 compared.
Large objects: the source is streamed part by part (never whole in memory); each part's MD5 is
checked against the ETag the destination computed for it, the completed object's ETag against
the MD5-of-MD5s we computed, and the full-object MD5 against a plain source ETag before
CompleteMultipartUpload, so a copy that does not verify never becomes visible.

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
from dataclasses import dataclass, field
from pathlib import Path
from threading import BoundedSemaphore
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tasks.adaptive_concurrency import AdaptiveLimiter, WireStats
from tasks.multipart_resume import ResumeRecord, ResumeStore
from tasks.replication_plan import (
    META_MD5,
    META_PARTS,
    META_RCLONE_MD5,
    META_SHA256,
    META_SOURCE_ETAG,
    ObjectInfo,
)
from tasks.retry_policy import backoff_delays
from tasks.s3_location import S3Location

MIB = 1024 * 1024


class VerificationFailed(Exception):
    """The bytes at the destination (or read from the source) do not match the checksums."""


class SourceVanished(Exception):
    """The source object was deleted after the listing; nothing to copy."""


@dataclass
class CopySettings:
    multipart_threshold: int = 16 * MIB
    part_size: int = 8 * MIB
    concurrency: int = 16
    large_concurrency: int = 4  # objects streamed in parts at once
    part_concurrency: int = 4  # parts of one object uploading at once (memory ~ large x (part + 1) x part_size)
    verify_readback: bool = False  # also GET every copied object and compare SHA-256
    object_attempts: int = 3  # whole-object retries on top of botocore's per-request retries
    max_request_attempts: int = 8
    resume_dir: Path = Path(".state/replication/uploads")


@dataclass
class CopyOutcome:
    key: str
    size: int
    status: str  # copied | vanished | failed
    error: str | None = None
    verified_at: float | None = None
    lag_s: float | None = None
    parts_resumed: int = 0
    attempts: int = 1


@dataclass
class BatchResult:
    outcomes: list[CopyOutcome] = field(default_factory=list)
    retries: int = 0
    throttles: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    lowest_concurrency: int = 0


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
        self.src = source.client(max_attempts=settings.max_request_attempts, max_pool_connections=pool, observer=stats.observe)
        self.dst = destination.client(max_attempts=settings.max_request_attempts, max_pool_connections=pool, observer=stats.observe)
        self.resume = ResumeStore(settings.resume_dir)
        self.part_pool = ThreadPoolExecutor(
            max_workers=max(1, settings.large_concurrency * settings.part_concurrency), thread_name_prefix="part"
        )
        self._record_lock = threading.Lock()

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
        body = got["Body"].read()
        src_etag = _etag(got.get("ETag"))
        if len(body) != got.get("ContentLength", len(body)):
            raise VerificationFailed(f"short read from source: {len(body)} of {got.get('ContentLength')} bytes")
        md5 = hashlib.md5(body)
        sha = hashlib.sha256(body).hexdigest()
        self._check_source(md5.hexdigest(), src_etag, got.get("Metadata") or {}, sha)
        metadata = {META_SOURCE_ETAG: src_etag, META_SHA256: sha, META_MD5: md5.hexdigest()}
        key = self.destination.full_key(obj.key)
        extra: dict[str, Any] = {}
        if got.get("ContentType"):
            extra["ContentType"] = got["ContentType"]
        put = self.dst.put_object(
            Bucket=self.destination.bucket, Key=key, Body=body, ContentMD5=_b64(md5.digest()), Metadata=metadata, **extra
        )
        etag_ok = _etag(put.get("ETag")) == md5.hexdigest()
        if not etag_ok or self.settings.verify_readback:
            self._verify_by_readback(key, sha, len(body))
        return self._done(obj, got)

    def _check_source(self, md5_hex: str, src_etag: str, src_meta: dict[str, str], sha_hex: str | None) -> None:
        if "-" not in src_etag and len(src_etag) == 32 and md5_hex != src_etag:
            raise VerificationFailed(f"bytes read from the source do not match its ETag {src_etag}")
        recorded = src_meta.get(META_SHA256)
        if recorded and sha_hex and recorded != sha_hex:
            raise VerificationFailed("bytes read from the source do not match their recorded llmr-sha256")

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

    def _done(self, obj: ObjectInfo, got: dict[str, Any], parts_resumed: int = 0) -> CopyOutcome:
        now = time.time()
        written = got.get("LastModified")
        source_time = written.timestamp() if written is not None else obj.last_modified
        return CopyOutcome(
            key=obj.key, size=obj.size, status="copied", verified_at=now, lag_s=max(0.0, now - source_time),
            parts_resumed=parts_resumed,
        )

    # -- large objects ---------------------------------------------------------------------
    def copy_large(self, obj: ObjectInfo) -> CopyOutcome:
        s = self.settings
        dkey = self.destination.full_key(obj.key)
        try:
            head = self.src.head_object(Bucket=self.source.bucket, Key=self.source.full_key(obj.key))
        except ClientError as exc:
            if _is_not_found(exc):
                raise SourceVanished(obj.key) from None
            raise
        src_etag = _etag(head.get("ETag"))
        size = int(head["ContentLength"])
        part_size = max(s.part_size, 5 * MIB, -(-size // 10_000))
        part_count = max(1, -(-size // part_size))
        record = self._resumable(dkey, src_etag, size, part_size)
        if record is None:
            metadata = {META_SOURCE_ETAG: src_etag, META_PARTS: f"{part_count}:{part_size}"}
            if "-" not in src_etag and len(src_etag) == 32:
                metadata[META_RCLONE_MD5] = _b64(bytes.fromhex(src_etag))
                metadata[META_MD5] = src_etag
            recorded_sha = (head.get("Metadata") or {}).get(META_SHA256)
            if recorded_sha:
                metadata[META_SHA256] = recorded_sha
            extra = {"ContentType": head["ContentType"]} if head.get("ContentType") else {}
            created = self.dst.create_multipart_upload(Bucket=self.destination.bucket, Key=dkey, Metadata=metadata, **extra)
            record = ResumeRecord(self.destination.store_id, dkey, created["UploadId"], src_etag, size, part_size)
            self.resume.save(record)
        resumed = len(record.parts)
        got = self.src.get_object(Bucket=self.source.bucket, Key=self.source.full_key(obj.key), IfMatch=head["ETag"])
        body = got["Body"]
        full_md5, full_sha = hashlib.md5(), hashlib.sha256()
        part_digests: list[bytes] = []
        parts: list[dict[str, Any]] = []
        uploads: list[Future] = []
        in_flight = BoundedSemaphore(max(1, s.part_concurrency))
        part_failed = threading.Event()
        read = 0

        def upload(number: int, chunk: bytes, md5: bytes) -> None:
            try:
                up = self.dst.upload_part(
                    Bucket=self.destination.bucket, Key=dkey, UploadId=record.upload_id, PartNumber=number,
                    Body=chunk, ContentMD5=_b64(md5),
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
                in_flight.release()

        try:
            # One reader hashes the stream in order (full-object MD5/SHA-256); parts upload in parallel.
            for number in range(1, part_count + 1):
                want = min(part_size, size - read)
                chunk = _read_exact(body, want)
                read += len(chunk)
                md5 = hashlib.md5(chunk).digest()
                full_md5.update(chunk)
                full_sha.update(chunk)
                part_digests.append(md5)
                parts.append({"PartNumber": number, "ETag": f'"{md5.hex()}"'})
                if record.parts.get(number) != md5.hex():
                    in_flight.acquire()
                    uploads.append(self.part_pool.submit(upload, number, chunk, md5))
                del chunk
                if part_failed.is_set():
                    break
        finally:
            body.close()
            errors = [f.exception() for f in uploads if f.exception() is not None]
        if errors:
            raise errors[0]
        if read != size:
            raise VerificationFailed(f"read {read} of {size} source bytes")
        self._check_source(full_md5.hexdigest(), src_etag, head.get("Metadata") or {}, full_sha.hexdigest())
        expected = f"{hashlib.md5(b''.join(part_digests)).hexdigest()}-{part_count}"
        try:
            done = self.dst.complete_multipart_upload(
                Bucket=self.destination.bucket, Key=dkey, UploadId=record.upload_id, MultipartUpload={"Parts": parts}
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                self.resume.delete(record.store_id, dkey)  # completed by a killed run, or aborted: start over
            raise
        self.resume.delete(record.store_id, dkey)
        if _etag(done.get("ETag")) != expected:
            self._verify_by_readback(dkey, full_sha.hexdigest(), size)
        elif self.settings.verify_readback:
            self._verify_by_readback(dkey, full_sha.hexdigest(), size)
        return self._done(obj, got, parts_resumed=resumed)

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
        large = obj.size > self.settings.multipart_threshold
        delays = backoff_delays(self.settings.object_attempts, base_s=0.5, cap_s=10)
        last_error = ""
        for attempt in range(1, self.settings.object_attempts + 1):
            try:
                outcome = self.copy_large(obj) if large else self.copy_small(obj)
                outcome.attempts = attempt
                return outcome
            except SourceVanished:
                return CopyOutcome(key=obj.key, size=obj.size, status="vanished", attempts=attempt)
            except ClientError as exc:
                err = exc.response.get("Error", {})
                last_error = f"{err.get('Code')}: {err.get('Message')}"
                if err.get("Code") in {"AccessDenied", "NoSuchBucket", "InvalidAccessKeyId"}:
                    break
            except (BotoCoreError, VerificationFailed, OSError, ValueError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if attempt <= len(delays):
                stats.add_retry()
                time.sleep(delays[attempt - 1])
        return CopyOutcome(key=obj.key, size=obj.size, status="failed", error=last_error[:500], attempts=attempt)


def _read_exact(body: Any, n: int) -> bytes:
    first = body.read(n)
    if len(first) == n or not first:
        return first
    buf = bytearray(first)
    while len(buf) < n:
        chunk = body.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def copy_objects(
    source: S3Location, destination: S3Location, objects: list[ObjectInfo], settings: CopySettings
) -> BatchResult:
    """Copy a batch with a bounded, adaptive worker pool; every object gets an outcome."""
    limiter = AdaptiveLimiter(settings.concurrency)
    stats = WireStats(limiter=limiter)
    copier = ObjectCopier(source, destination, settings, stats)
    large_gate = BoundedSemaphore(max(1, settings.large_concurrency))

    def work(obj: ObjectInfo) -> CopyOutcome:
        large = obj.size > settings.multipart_threshold
        if large:
            large_gate.acquire()
        try:
            with limiter:
                outcome = copier.copy(obj, stats)
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
        connection_errors=stats.connection_errors, lowest_concurrency=limiter.lowest,
    )
