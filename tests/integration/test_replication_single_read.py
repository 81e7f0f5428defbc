"""A source written in parts, copied through one streamed PUT: one read of the source, checked on
the way, its MD5 recorded as a tag; and every byte read goes through MD5 once, for the part MD5s
and the whole-object MD5 together (real moto endpoints, real botocore)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import tasks.part_streaming as part_streaming
import tasks.replication_copy as replication_copy
import tasks.streamed_body as streamed_body
import tasks.twin_md5 as twin_md5

from deployments.settings import PlatformSettings
from tasks.replication import load_location
from tasks.replication_plan import plan_replication
from tasks.s3_listing import list_location, read_metadata
from tests.fault_proxy import FaultProxy
from tests.replication_helpers import MIB, PARTED, copier_for, make_pair, md5, put_parted, source_info, through_proxy

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


class HashedBytes:
    """A spy, not a stand-in, on MD5 in the copier's modules: bytes through hashlib, bytes of
    whole blocks through the compiled twin (its digests' padding blocks apart)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashlib = 0
        self.twin = 0
        spy = self

        class Md5:
            def __init__(self, data: bytes = b"", inner: Any = None) -> None:
                self._h = inner if inner is not None else hashlib.md5()
                self.update(data)

            def update(self, data: Any) -> None:
                spy.hashlib += len(memoryview(data))
                self._h.update(data)

            def copy(self) -> "Md5":
                return Md5(inner=self._h.copy())

            def digest(self) -> bytes:
                return self._h.digest()

            def hexdigest(self) -> str:
                return self._h.hexdigest()

        class Hashlib:
            md5 = Md5

            def __getattr__(self, name: str) -> Any:
                return getattr(hashlib, name)

        real_compress2, real_finish = twin_md5.compress2, twin_md5._finish
        finishing = []

        def compress2(a: bytearray, b: bytearray, data: Any) -> None:
            if not finishing:
                spy.twin += len(memoryview(data))
            real_compress2(a, b, data)

        def finish(state: bytes, tail: bytes, length: int) -> bytes:
            finishing.append(1)
            try:
                return real_finish(state, tail, length)
            finally:
                finishing.pop()

        for module in (replication_copy, streamed_body, part_streaming, twin_md5):
            monkeypatch.setattr(module, "hashlib", Hashlib())
        monkeypatch.setattr(twin_md5, "compress2", compress2)
        monkeypatch.setattr(twin_md5, "_finish", finish)


@pytest.mark.parametrize("path", ["streamed-put", "multipart"])
def test_every_byte_read_is_md5_hashed_once_for_the_parts_and_the_whole_object(
    platform: PlatformSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str,
) -> None:
    """The streamed PUT of a source written in parts (its part MD5s check the read, its whole MD5
    the destination's ETag), and a plain-ETag source above the multipart threshold (its part MD5s
    check each part's ETag, its whole MD5 the source's ETag): both digests from one pass."""
    pair = make_pair(platform, f"oncehashed-{path}")
    key = f"{pair.prefix}/data.bin"
    if path == "streamed-put":
        assert put_parted(pair.a, platform.region_a.bucket, key).endswith("-3")
        threshold = 64 * MIB
    else:
        pair.a.put_object(Bucket=platform.region_a.bucket, Key=key, Body=PARTED)  # a plain ETag
        threshold = 8 * MIB  # PARTED is 11 MiB: copied in parts
    assert twin_md5.NATIVE
    hashed = HashedBytes(monkeypatch)
    copier, stats, gets = copier_for(pair, tmp_path / "uploads", multipart_threshold=threshold)
    try:
        outcome = copier.copy(source_info(pair, "data.bin"), stats)
    finally:
        copier.close()
    monkeypatch.undo()
    assert outcome.status == "copied" and outcome.unchecked is None, outcome.error
    assert gets == [f"/{key}"]
    assert hashed.twin == len(PARTED) // 64 * 64  # each whole block once, for both digests
    assert hashed.hashlib <= 16 * 8  # only the part MD5s, when an ETag is rebuilt from them
    got = pair.b.get_object(Bucket=platform.region_b.bucket, Key=key)
    assert got["Body"].read() == PARTED
