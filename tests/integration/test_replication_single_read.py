"""A source written in parts, copied through one streamed PUT: one read of the source, checked on
the way, its MD5 recorded as a tag (real moto endpoints, real botocore)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import tasks.replication_copy as replication_copy
from deployments.settings import PlatformSettings
from tasks.replication import load_location
from tasks.replication_plan import plan_replication
from tasks.s3_listing import list_location, read_metadata
from tests.replication_helpers import PARTED, copier_for, make_pair, md5, put_parted, source_info

pytestmark = pytest.mark.integration

def test_a_source_written_in_parts_is_read_once_and_a_rewritten_copy_is_caught(platform: PlatformSettings, tmp_path: Path) -> None:
    pair = make_pair(platform, "oneread")
    src_bucket, dst_bucket = platform.region_a.bucket, platform.region_b.bucket
    etag = put_parted(pair.a, src_bucket, f"{pair.prefix}/parted.bin")
    assert etag.endswith("-3")
    copier, stats, gets = copier_for(pair, tmp_path / "uploads")
    try:
        outcome = copier.copy(source_info(pair, "parted.bin"), stats)
    finally:
        copier.close()
    assert outcome.status == "copied", outcome.error
    assert gets == [f"/{pair.prefix}/parted.bin"]  # one read of the source
    dkey = f"{pair.prefix}/parted.bin"
    head = pair.b.head_object(Bucket=dst_bucket, Key=dkey)
    assert head["ETag"].strip('"') == md5(PARTED)
    assert pair.b.get_object(Bucket=dst_bucket, Key=dkey)["Body"].read() == PARTED
    assert pair.b.get_object_tagging(Bucket=dst_bucket, Key=dkey)["TagSet"] == [{"Key": "llmr-md5", "Value": md5(PARTED)}]

    src_loc, dst_loc = load_location(pair.source), load_location(pair.destination)

    def plan():  # noqa: ANN202
        src, dst = list_location(src_loc), list_location(dst_loc)
        first = plan_replication(src, dst, delete=False)
        return plan_replication(src, dst, delete=False, destination_metadata=read_metadata(dst_loc, first.needs_metadata))

    assert [o.key for o in plan().in_sync] == ["parted.bin"]
    # other bytes of the same size, written with our metadata and our tag kept: the tag's MD5 no
    # longer matches the ETag the store computed, so the object is copied again
    pair.b.put_object(Bucket=dst_bucket, Key=dkey, Body=b"\0" * len(PARTED), Metadata=head["Metadata"],
                      Tagging=f"llmr-md5={md5(PARTED)}")
    assert [o.key for o in plan().copy] == ["parted.bin"]
    # and a copy whose tag went missing is not trusted either
    pair.b.put_object(Bucket=dst_bucket, Key=dkey, Body=PARTED, Metadata=head["Metadata"])
    assert [o.key for o in plan().copy] == ["parted.bin"]


class FlipOneByte:
    """The source's socket, with one byte of the last part changed on the way."""

    def __init__(self, stream: Any, at: int) -> None:
        self.stream, self.at, self.pos = stream, at, 0

    def read(self, n: int = -1) -> bytes:
        chunk = bytearray(self.stream.read(n))
        if self.pos <= self.at < self.pos + len(chunk):
            chunk[self.at - self.pos] ^= 0xFF
        self.pos += len(chunk)
        return bytes(chunk)


def test_a_source_read_that_does_not_verify_never_becomes_visible(platform: PlatformSettings, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pair = make_pair(platform, "badread")
    put_parted(pair.a, platform.region_a.bucket, f"{pair.prefix}/parted.bin")
    monkeypatch.setattr(replication_copy, "socket_stream", lambda body: FlipOneByte(body, len(PARTED) - 100))
    copier, stats, gets = copier_for(pair, tmp_path / "uploads")
    copier.settings.object_attempts = 2
    try:
        outcome = copier.copy(source_info(pair, "parted.bin"), stats)
    finally:
        copier.close()
    assert outcome.status == "failed" and outcome.attempts == 2
    assert "do not match its multipart ETag" in (outcome.error or "")
    assert len(gets) == 2  # one read per attempt
    listed = pair.b.list_objects_v2(Bucket=platform.region_b.bucket, Prefix=pair.prefix)
    assert listed.get("KeyCount", 0) == 0  # the PUT was cut short before its last block: nothing stored


class NoTagging:
    """A destination client whose store refuses object tagging (as some S3-compatible stores do)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def put_object_tagging(self, **kwargs: Any) -> dict:
        raise ClientError({"Error": {"Code": "NotImplemented", "Message": "tagging is not supported"}}, "PutObjectTagging")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_destination_without_tagging_gets_the_md5_in_metadata_after_a_second_read(platform: PlatformSettings, tmp_path: Path) -> None:
    pair = make_pair(platform, "notags")
    for name in ("one.bin", "two.bin"):
        put_parted(pair.a, platform.region_a.bucket, f"{pair.prefix}/{name}")
    copier, stats, gets = copier_for(pair, tmp_path / "uploads")
    copier.dst = NoTagging(copier.dst)
    try:
        outcomes = [copier.copy(source_info(pair, name), stats) for name in ("one.bin", "two.bin")]
    finally:
        copier.close()
    assert [o.status for o in outcomes] == ["copied", "copied"], [o.error for o in outcomes]
    assert copier.tagging is False
    assert len(gets) == 5  # one.bin: streamed, refused a tag, then hashed + streamed again; two.bin: hashed + streamed
    for name in ("one.bin", "two.bin"):
        meta = pair.b.head_object(Bucket=platform.region_b.bucket, Key=f"{pair.prefix}/{name}")["Metadata"]
        assert meta["llmr-md5"] == md5(PARTED) and "llmr-md5-in-tag" not in meta
