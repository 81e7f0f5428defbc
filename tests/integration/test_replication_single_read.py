"""A source written in parts, copied through one streamed PUT: one read of the source, checked on
the way, its MD5 recorded as a tag (real moto endpoints, real botocore)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.settings import PlatformSettings
from tasks.replication import load_location
from tasks.replication_plan import plan_replication
from tasks.s3_listing import list_location, read_metadata
from tests.fault_proxy import FaultProxy
from tests.replication_helpers import PARTED, copier_for, make_pair, md5, put_parted, source_info, through_proxy

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


def test_a_source_read_that_does_not_verify_never_becomes_visible(platform: PlatformSettings, tmp_path: Path) -> None:
    """One byte of every answer to the source GET changes on the wire (a FaultProxy in front of
    the source): the read no longer rebuilds the source's ETag, so the PUT is cut short."""
    pair = make_pair(platform, "badread")
    key = f"{pair.prefix}/parted.bin"
    put_parted(pair.a, platform.region_a.bucket, key)
    proxy = FaultProxy(platform.url(platform.region_a.s3_port),
                       corrupt_when=lambda r: r.method == "GET" and r.path.endswith(f"/{key}")).start()
    try:
        copier, stats, gets = copier_for(pair, tmp_path / "uploads", source=through_proxy(pair, "source", proxy))
        copier.settings.object_attempts = 2
        try:
            outcome = copier.copy(source_info(pair, "parted.bin"), stats)
        finally:
            copier.close()
    finally:
        proxy.stop()
    assert outcome.status == "failed" and outcome.attempts == 2
    assert "do not match its multipart ETag" in (outcome.error or "")
    assert len(gets) == 2 and proxy.counts["corrupted"] == 2  # one read per attempt, each changed on the wire
    listed = pair.b.list_objects_v2(Bucket=platform.region_b.bucket, Prefix=pair.prefix)
    assert listed.get("KeyCount", 0) == 0  # the PUT was cut short before its last block: nothing stored


def test_a_destination_without_tagging_gets_the_md5_in_metadata_after_a_second_read(platform: PlatformSettings, tmp_path: Path) -> None:
    """The destination answers object tagging with 501 NotImplemented, as some S3-compatible stores do."""
    pair = make_pair(platform, "notags")
    for name in ("one.bin", "two.bin"):
        put_parted(pair.a, platform.region_a.bucket, f"{pair.prefix}/{name}")
    proxy = FaultProxy(platform.url(platform.region_b.s3_port),
                       not_implemented_when=lambda r: r.method == "PUT" and "tagging" in r.query).start()
    try:
        copier, stats, gets = copier_for(pair, tmp_path / "uploads", destination=through_proxy(pair, "destination", proxy))
        try:
            outcomes = [copier.copy(source_info(pair, name), stats) for name in ("one.bin", "two.bin")]
        finally:
            copier.close()
    finally:
        proxy.stop()
    assert [o.status for o in outcomes] == ["copied", "copied"], [o.error for o in outcomes]
    assert copier.tagging is False and proxy.counts["not_implemented"] == 1  # asked once, then never again
    assert len(gets) == 5  # one.bin: streamed, refused a tag, then hashed + streamed again; two.bin: hashed + streamed
    for name in ("one.bin", "two.bin"):
        meta = pair.b.head_object(Bucket=platform.region_b.bucket, Key=f"{pair.prefix}/{name}")["Metadata"]
        assert meta["llmr-md5"] == md5(PARTED) and "llmr-md5-in-tag" not in meta
