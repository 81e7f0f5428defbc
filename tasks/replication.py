"""Prefect tasks of the replication flow: thin wrappers over plain, typed logic.

Tasks pass S3Location values (which carry credentials) only in memory: NO_CACHE keeps Prefect from
hashing them, and nothing here logs them.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import StorageTarget
from tasks.errors import ConfigurationError
from tasks.replication_copy import BatchResult, CopySettings, copy_objects
from tasks.replication_deletes import DeleteResult, delete_objects, expire_quarantine
from tasks.replication_plan import Listing, ObjectInfo
from tasks.retry_policy import network_task_options
from tasks.s3_listing import list_location, read_metadata
from tasks.s3_location import (
    S3Location, check_distinct, check_md5_etags, check_quarantine, check_reachable, location_from_target,
)


def load_location(block_name: str, prefix: str = "") -> S3Location:
    try:
        target = StorageTarget.load(block_name)
    except (ValueError, httpx.HTTPError) as exc:
        raise ConfigurationError(f"storage-target/{block_name}: cannot load the block ({exc})") from None
    return location_from_target(target, block_name).with_prefix(prefix)


@task(name="resolve-replication-targets", cache_policy=NO_CACHE, **network_task_options(retries=2))
def resolve_targets(source: str, destinations: list[str], prefix: str,
                    quarantine_prefix: str | None = None) -> tuple[S3Location, list[S3Location]]:
    """Load the blocks and refuse bad input (same place, overlapping, inside the quarantine,
    missing bucket, refused credentials, SSE-KMS by default) before anything is copied or deleted."""
    if not destinations:
        raise ConfigurationError("destinations: give at least one storage-target block name")
    # Each step is a round trip per target (the API for blocks, the store for checks): one at a
    # time they were a third of a small run's wall time. map() raises the first failure in order.
    # Block.load runs in each caller's context (its Prefect settings: API URL, test harness).
    names = [source, *destinations]
    contexts = [contextvars.copy_context() for _ in names]
    with ThreadPoolExecutor(max_workers=min(8, len(names)), thread_name_prefix="resolve") as pool:
        src, *dsts = pool.map(lambda name, ctx: ctx.run(load_location, name, prefix), names, contexts)
        check_distinct(src, dsts)
        check_quarantine([src, *dsts], quarantine_prefix)
        list(pool.map(_check_location, [src, *dsts]))
    return src, dsts


def _check_location(location: S3Location) -> None:
    check_reachable(location)
    check_md5_etags(location)


@task(name="list-objects", cache_policy=NO_CACHE, **network_task_options(retries=2))
def list_objects_task(location: S3Location, exclude_prefixes: tuple[str, ...] = (), page_size: int = 1000) -> Listing:
    return list_location(location, exclude_prefixes=exclude_prefixes, page_size=page_size)


@task(name="read-destination-metadata", cache_policy=NO_CACHE, **network_task_options(retries=2))
def read_metadata_task(location: S3Location, keys: list[str], concurrency: int) -> dict[str, dict[str, str]]:
    return read_metadata(location, keys, concurrency=concurrency)


@task(name="copy-batch", cache_policy=NO_CACHE, **network_task_options(retries=1))
def copy_batch(source: S3Location, destination: S3Location, objects: list[ObjectInfo], settings: CopySettings) -> BatchResult:
    """Copy many objects in one task run (per-object failures are outcomes, not exceptions)."""
    return copy_objects(source, destination, objects, settings)


@task(name="delete-objects", cache_policy=NO_CACHE, **network_task_options(retries=1))
def delete_batch(
    destination: S3Location, objects: list[ObjectInfo], quarantine_prefix: str | None, quarantine_days: int, concurrency: int
) -> DeleteResult:
    result = delete_objects(
        destination, objects, quarantine_prefix=quarantine_prefix, quarantine_days=quarantine_days, concurrency=concurrency
    )
    if quarantine_prefix:
        result.expired_from_quarantine = expire_quarantine(destination, quarantine_prefix, today=dt.datetime.now(dt.UTC).date())
    return result
