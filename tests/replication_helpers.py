"""Helpers for the replication tests: blocks on a prefix, seeded objects, rclone check."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from pydantic import SecretStr

from blocks import StorageTarget
from deployments.settings import PlatformSettings, RegionSettings
from tasks.adaptive_concurrency import AdaptiveLimiter, WireStats
from tasks.replication import load_location
from tasks.replication_copy import CopySettings, ObjectCopier
from tasks.replication_plan import ObjectInfo
from tests.fault_proxy import FaultProxy

MIB = 1024 * 1024
PARTED = bytes(range(256)) * (44 * 1024) + b"tail"  # 11 MiB + 4 bytes, written in 5 MiB parts


def region_client(settings: PlatformSettings, region: RegionSettings):  # noqa: ANN201
    return boto3.client(
        "s3", endpoint_url=settings.url(region.s3_port), region_name="us-east-1",
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        config=Config(max_pool_connections=32, retries={"max_attempts": 5, "mode": "standard"},
                      s3={"addressing_style": "path"}),
    )


def save_target(settings: PlatformSettings, name: str, bucket: str, prefix: str, endpoint: str,
                key_id: str | None = None) -> StorageTarget:
    target = StorageTarget(
        url=f"s3://{bucket}/{prefix}", endpoint_url=endpoint, region_name="us-east-1",
        access_key_id=key_id or settings.s3_access_key_id,
        secret_access_key=SecretStr(settings.s3_secret_access_key.get_secret_value()),
    )
    target.save(name, overwrite=True)
    return target


def through_proxy(pair: Pair, side: str, proxy: FaultProxy) -> str:
    """A block naming the same bucket and prefix as ``pair``'s ``side`` ("source" or
    "destination"), reached through ``proxy``: faults happen on the wire, not in the client."""
    settings = pair.settings
    region = settings.region_a if side == "source" else settings.region_b
    name = f"{getattr(pair, side)}-via-proxy"
    save_target(settings, name, region.bucket, pair.prefix, proxy.url)
    return name


@dataclass
class Pair:
    """A source prefix in region-a and the same prefix in region-b, saved as two blocks."""

    settings: PlatformSettings
    prefix: str
    source: str
    destination: str

    @property
    def a(self):  # noqa: ANN201
        return region_client(self.settings, self.settings.region_a)

    @property
    def b(self):  # noqa: ANN201
        return region_client(self.settings, self.settings.region_b)


def make_pair(settings: PlatformSettings, name: str, *, src_endpoint: str | None = None,
              dst_endpoint: str | None = None) -> Pair:
    prefix = f"repl-tests/{name}"
    save_target(settings, f"{name}-src", settings.region_a.bucket, prefix,
                src_endpoint or settings.url(settings.region_a.s3_port))
    save_target(settings, f"{name}-dst", settings.region_b.bucket, prefix,
                dst_endpoint or settings.url(settings.region_b.s3_port))
    return Pair(settings, prefix, f"{name}-src", f"{name}-dst")


def seeded_objects(count: int, *, seed: int, sizes: tuple[int, int] = (0, 64 * 1024),
                   large: list[int] | None = None) -> dict[str, bytes]:
    rng = random.Random(seed)
    objects = {}
    for i in range(count):
        size = rng.randint(*sizes)
        objects[f"d{i % 7}/obj-{i:05d}.bin"] = rng.randbytes(size)
    for j, size in enumerate(large or []):
        objects[f"large/blob-{j}.bin"] = rng.randbytes(size)
    return objects


def put_all(client, bucket: str, prefix: str, objects: dict[str, bytes]) -> None:  # noqa: ANN001
    def put(item: tuple[str, bytes]) -> None:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{item[0]}", Body=item[1])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, objects.items()))


def list_keys(client, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:  # noqa: ANN001
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) + 1:]] = (o["Size"], o["ETag"].strip('"'))
    return out


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def rclone_check(settings: PlatformSettings, prefix: str, *extra: str) -> subprocess.CompletedProcess:
    """`rclone check` between the two S3 endpoints: the anchor's independent verdict (MD5/ETag)."""
    rclone = shutil.which("rclone")
    assert rclone, "rclone is not installed (Debian package rclone)"
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    for name, region in (("SRC", settings.region_a), ("DST", settings.region_b)):
        env.update({
            f"RCLONE_CONFIG_{name}_TYPE": "s3", f"RCLONE_CONFIG_{name}_PROVIDER": "Other",
            f"RCLONE_CONFIG_{name}_ENDPOINT": settings.url(region.s3_port),
            f"RCLONE_CONFIG_{name}_ACCESS_KEY_ID": settings.s3_access_key_id,
            f"RCLONE_CONFIG_{name}_SECRET_ACCESS_KEY": settings.s3_secret_access_key.get_secret_value(),
            f"RCLONE_CONFIG_{name}_REGION": "us-east-1",
            f"RCLONE_CONFIG_{name}_FORCE_PATH_STYLE": "true",
        })
    cmd = [rclone, "check", f"SRC:{settings.region_a.bucket}/{prefix}", f"DST:{settings.region_b.bucket}/{prefix}",
           "--checkers", "16", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def put_parted(client: Any, bucket: str, key: str, data: bytes = PARTED) -> str:
    """Write ``data`` in 5 MiB parts; returns its multipart ETag."""
    up = client.create_multipart_upload(Bucket=bucket, Key=key)
    cuts = range(0, len(data), 5 * MIB)
    etags = [client.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=data[i:i + 5 * MIB])["ETag"]
             for n, i in enumerate(cuts, 1)]
    done = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    return done["ETag"].strip('"')


def copier_for(pair: Pair, resume_dir: Path, *, multipart_threshold: int = 64 * MIB, source: str | None = None,
               destination: str | None = None) -> tuple[ObjectCopier, WireStats, list[str]]:
    """An ObjectCopier for ``pair`` (or the blocks ``source`` / ``destination``, e.g. the same
    buckets through a FaultProxy), and the list of source GETs it makes."""
    stats = WireStats(limiter=AdaptiveLimiter(4))
    copier = ObjectCopier(load_location(source or pair.source), load_location(destination or pair.destination),
                          CopySettings(multipart_threshold=multipart_threshold, resume_dir=resume_dir), stats)
    gets: list[str] = []
    copier.src.meta.events.register("before-call.s3.GetObject", lambda params, **_: gets.append(params["url_path"]))
    return copier, stats, gets


def source_info(pair: Pair, key: str) -> ObjectInfo:
    head = pair.a.head_object(Bucket=pair.settings.region_a.bucket, Key=f"{pair.prefix}/{key}")
    return ObjectInfo(key, head["ContentLength"], head["ETag"].strip('"'), head["LastModified"].timestamp())
