"""Prefect tasks of checkpoint verification: list, verify a batch of files, read and write the manifest.

Thin wrappers: the logic is in ``tasks.checkpoint_verifier`` and friends. Every task reads or
writes storage, so it retries with backoff + jitter; bad input (a missing block) does not.
No result caching: a verification that reused an old answer would not have read the bytes.
"""

from __future__ import annotations

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks import StorageTarget
from tasks.checkpoint_manifest import IntegrityManifest
from tasks.checkpoint_verifier import CheckpointFile, FileResult, VerifySettings, list_checkpoint_files, verify_files
from tasks.errors import ConfigurationError
from tasks.retry_policy import network_task_options


def load_target(target: StorageTarget | str) -> StorageTarget:
    if isinstance(target, StorageTarget):
        return target
    try:
        return StorageTarget.load(target)
    except (ValueError, httpx.HTTPError) as exc:
        raise ConfigurationError(f"cannot load StorageTarget block {target!r}: {exc}") from exc


def location_root(target: StorageTarget, prefix: str) -> str:
    try:
        return target.path(prefix.strip("/")) if prefix.strip("/") else target.root
    except ValueError as exc:
        raise ConfigurationError(f"prefix {prefix!r}: {exc}") from exc


@task(name="list-checkpoint-files", **network_task_options(), cache_policy=NO_CACHE)
def list_files(target: StorageTarget, prefix: str, exclude: list[str]) -> list[CheckpointFile]:
    return list_checkpoint_files(target.filesystem(), location_root(target, prefix), exclude)


@task(name="verify-checkpoint-files", **network_task_options(retries=2), cache_policy=NO_CACHE)
def verify_batch(target: StorageTarget, prefix: str, files: list[CheckpointFile], settings: VerifySettings) -> list[FileResult]:
    """Structure, hashes and (optionally) statistics for a batch of files, on a thread pool."""
    return verify_files(target.filesystem(), location_root(target, prefix), files, settings)


@task(name="read-checkpoint-manifest", **network_task_options(), cache_policy=NO_CACHE)
def read_manifest(target: StorageTarget, prefix: str, manifest_path: str) -> bytes | None:
    fs = target.filesystem()
    path = f"{location_root(target, prefix)}/{manifest_path}"
    if not fs.exists(path):
        return None
    return fs.cat_file(path)


@task(name="write-checkpoint-manifest", **network_task_options(), cache_policy=NO_CACHE)
def write_manifest(target: StorageTarget, prefix: str, manifest_path: str, manifest: IntegrityManifest) -> str:
    fs = target.filesystem()
    path = f"{location_root(target, prefix)}/{manifest_path}"
    fs.pipe_file(path, manifest.to_json())
    return path
