"""Delete (or quarantine) destination objects the source no longer has, and expire quarantine.

Quarantined objects are copied server-side to ``<quarantine prefix>/<expiry date>/<key>`` before
the delete, so an unwanted delete can be undone until that date; each run removes the quarantine
folders whose date has passed. The caller decides *whether* to delete (complete listings, guard).
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from tasks.replication_plan import ObjectInfo
from tasks.s3_location import S3Location


@dataclass
class DeleteResult:
    deleted: list[ObjectInfo] = field(default_factory=list)
    quarantined: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    expired_from_quarantine: int = 0


def quarantine_key(quarantine_prefix: str, expires: dt.date, full_key: str) -> str:
    return f"{quarantine_prefix.strip('/')}/{expires.isoformat()}/{full_key}"


def delete_objects(
    destination: S3Location,
    objects: list[ObjectInfo],
    *,
    quarantine_prefix: str | None,
    quarantine_days: int,
    concurrency: int = 16,
    today: dt.date | None = None,
) -> DeleteResult:
    client = destination.client(max_pool_connections=concurrency + 2)
    expires = (today or dt.datetime.now(dt.UTC).date()) + dt.timedelta(days=quarantine_days)
    result = DeleteResult()

    def one(obj: ObjectInfo) -> tuple[ObjectInfo, str | None]:
        key = destination.full_key(obj.key)
        try:
            if quarantine_prefix:
                client.copy_object(
                    Bucket=destination.bucket, Key=quarantine_key(quarantine_prefix, expires, key),
                    CopySource={"Bucket": destination.bucket, "Key": key},
                )
            client.delete_object(Bucket=destination.bucket, Key=key)
            return obj, None
        except (ClientError, BotoCoreError) as exc:
            return obj, f"{type(exc).__name__}: {exc}"[:300]

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for obj, error in pool.map(one, objects):
            if error:
                result.failed.append((obj.key, error))
            else:
                result.deleted.append(obj)
    if quarantine_prefix:
        result.quarantined = len(result.deleted)
    return result


def expire_quarantine(destination: S3Location, quarantine_prefix: str, *, today: dt.date | None = None) -> int:
    """Delete quarantine folders whose expiry date is before ``today``; returns objects removed."""
    client = destination.client()
    today = today or dt.datetime.now(dt.UTC).date()
    root = quarantine_prefix.strip("/") + "/"
    removed = 0
    folders = client.list_objects_v2(Bucket=destination.bucket, Prefix=root, Delimiter="/").get("CommonPrefixes", [])
    for folder in folders:
        name = folder["Prefix"][len(root):].strip("/")
        try:
            expiry = dt.date.fromisoformat(name)
        except ValueError:
            continue
        if expiry >= today:
            continue
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=destination.bucket, Prefix=folder["Prefix"]):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=destination.bucket, Delete={"Objects": keys, "Quiet": True})
                removed += len(keys)
    return removed
