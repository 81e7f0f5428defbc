"""List a location completely (or say it is incomplete), and read user metadata in bulk."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tasks.replication_plan import Listing, ObjectInfo
from tasks.s3_location import S3Location


def list_location(
    location: S3Location, *, exclude_prefixes: tuple[str, ...] = (), page_size: int = 1000, client: Any = None
) -> Listing:
    """Every object under the location's prefix. A page that fails after botocore's retries ends
    the listing with ``complete=False`` and the error: callers must not delete on such a listing."""
    client = client or location.client()
    listing = Listing()
    kwargs: dict[str, Any] = {"Bucket": location.bucket, "Prefix": location.prefix, "MaxKeys": page_size}
    try:
        while True:
            page = client.list_objects_v2(**kwargs)
            for item in page.get("Contents", []):
                rel = location.relative_key(item["Key"])
                if not rel or any(item["Key"].startswith(p) for p in exclude_prefixes):
                    continue
                listing.objects[rel] = ObjectInfo(
                    key=rel, size=int(item["Size"]), etag=item["ETag"].strip('"'),
                    last_modified=item["LastModified"].timestamp(),
                )
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
            if not token:
                raise ValueError("truncated listing page without a continuation token")
            kwargs["ContinuationToken"] = token
    except (ClientError, BotoCoreError, ValueError, OSError) as exc:
        listing.complete = False
        listing.error = f"{type(exc).__name__}: {exc}"[:300]
    return listing


def read_metadata(location: S3Location, keys: list[str], *, concurrency: int = 16, client: Any = None) -> dict[str, dict[str, str]]:
    """User metadata of each key (HEAD); keys that fail to answer are left out (and so get copied)."""
    client = client or location.client(max_pool_connections=concurrency + 2)

    def head(key: str) -> tuple[str, dict[str, str] | None]:
        try:
            return key, client.head_object(Bucket=location.bucket, Key=location.full_key(key)).get("Metadata") or {}
        except (ClientError, BotoCoreError):
            return key, None

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return {k: m for k, m in pool.map(head, keys) if m is not None}
