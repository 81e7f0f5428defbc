"""Sync mode: write an object to every region and acknowledge only when each holds it verified.

    from tasks.sync_replication import replicated_put
    result = replicated_put("prompts/v7.json", data, targets=["region-a", "region-b"])

The latency-for-consistency side of DESIGN.md §4.2: the call returns after every region's write
is verified (the ETag its store computed equals our MD5, else its bytes are read back and
hashed). If any region fails, ``ReplicatedPutIncomplete`` names the regions that lack the object;
the ones that succeeded keep it, and the scheduled ``replicate`` flow copies it to the rest.
"""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from blocks import StorageTarget
from tasks.errors import LLMResilienceError
from tasks.replication_plan import META_MD5, META_SHA256, META_SOURCE_ETAG
from tasks.s3_location import S3Location, location_from_target


@dataclass
class RegionWrite:
    region: str
    ok: bool
    etag: str | None = None
    error: str | None = None


@dataclass
class ReplicatedPut:
    key: str
    size: int
    sha256: str
    regions: list[RegionWrite] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [r.region for r in self.regions if not r.ok]


class ReplicatedPutIncomplete(LLMResilienceError):
    """The object is not verified in every region; ``missing`` names the regions lacking it and
    ``result`` holds every region's outcome."""

    def __init__(self, result: ReplicatedPut) -> None:
        details = "; ".join(f"{r.region}: {r.error}" for r in result.regions if not r.ok)
        super().__init__(f"{result.key!r} is not in every region; missing in {', '.join(result.missing)} ({details})")
        self.result = result

    @property
    def missing(self) -> list[str]:
        return self.result.missing


def _as_location(target: str | StorageTarget | S3Location, index: int) -> S3Location:
    if isinstance(target, S3Location):
        return target
    if isinstance(target, str):
        return location_from_target(StorageTarget.load(target), target)
    return location_from_target(target, f"target-{index}")


def _write_one(location: S3Location, key: str, data: bytes, md5: bytes, sha: str, content_type: str | None,
               max_attempts: int) -> RegionWrite:
    client = location.client(max_attempts=max_attempts, connect_timeout=3, read_timeout=30)
    full_key = location.full_key(key)
    md5_hex = md5.hex()
    metadata = {META_SHA256: sha, META_MD5: md5_hex, META_SOURCE_ETAG: md5_hex}
    extra = {"ContentType": content_type} if content_type else {}
    try:
        put = client.put_object(Bucket=location.bucket, Key=full_key, Body=data,
                                ContentMD5=base64.b64encode(md5).decode(), Metadata=metadata, **extra)
        etag = put.get("ETag", "").strip('"')
        if etag != md5_hex:  # the store's ETag is not a plain MD5 (e.g. SSE-KMS): hash what it returns
            body = client.get_object(Bucket=location.bucket, Key=full_key)["Body"].read()
            if hashlib.sha256(body).hexdigest() != sha:
                client.delete_object(Bucket=location.bucket, Key=full_key)
                return RegionWrite(location.label, False, error="bytes read back differ; removed")
        return RegionWrite(location.label, True, etag=etag)
    except (ClientError, BotoCoreError, OSError) as exc:
        return RegionWrite(location.label, False, error=f"{type(exc).__name__}: {exc}"[:300])


def replicated_put(
    key: str,
    data: bytes,
    targets: list[str | StorageTarget | S3Location] | None = None,
    *,
    content_type: str | None = None,
    max_attempts: int = 5,
) -> ReplicatedPut:
    """Write ``data`` at ``key`` (relative to each target's root) in every region at once; return
    when all hold the verified object, else raise ReplicatedPutIncomplete naming the missing regions.
    ``targets`` are StorageTarget block names (default region-a and region-b), blocks or locations."""
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"key {key!r}: must be a relative object key without '..'")
    locations = [_as_location(t, i) for i, t in enumerate(targets or ["region-a", "region-b"])]
    md5 = hashlib.md5(data).digest()
    sha = hashlib.sha256(data).hexdigest()
    result = ReplicatedPut(key=key, size=len(data), sha256=sha)
    with ThreadPoolExecutor(max_workers=len(locations)) as pool:
        result.regions = list(pool.map(lambda loc: _write_one(loc, key, data, md5, sha, content_type, max_attempts), locations))
    if result.missing:
        raise ReplicatedPutIncomplete(result)
    return result
