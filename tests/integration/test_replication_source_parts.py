"""Above the multipart threshold, a source written in parts whose store reports their size is
copied in those same parts with no hashing in this process: the destination's MD5 of each part it
stored, composed, must rebuild the source's ETag before CompleteMultipartUpload (real moto
endpoints, real botocore)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

import tasks.replication_copy as replication_copy
from deployments.settings import PlatformSettings
from tasks.replication import load_location
from tasks.replication_plan import plan_replication
from tasks.s3_listing import list_location, read_metadata
from tests.fault_proxy import FaultProxy
from tests.replication_helpers import MIB, PARTED, copier_for, make_pair, put_parted, source_info, through_proxy

pytestmark = pytest.mark.integration

THRESHOLD = 8 * MIB  # PARTED (11 MiB in 5 MiB parts) is above it


class PartsWire:
    """The destination as the wire saw it, through a FaultProxy in front of its store: each
    UploadPart (part number, whether it carried a Content-MD5), each upload created and completed.
    ``flip`` changes one byte of those parts' bodies on their first upload, on the way to the
    store; ``refuse`` resets the connection of those parts' uploads."""

    def __init__(self, platform: PlatformSettings, *, flip: set[int] = frozenset(), refuse: set[int] = frozenset()) -> None:
        pending_flips = set(flip)

        def flip_once(request: Any) -> bool:
            number = int(request.query.get("partNumber", 0))
            if request.method == "PUT" and number in pending_flips:
                pending_flips.discard(number)
                return True
            return False

        self.refuse = set(refuse)

        def refused(request: Any) -> bool:
            return request.method == "PUT" and int(request.query.get("partNumber", 0)) in self.refuse

        self.proxy = FaultProxy(platform.url(platform.region_b.s3_port), corrupt_request_when=flip_once, reset_when=refused)

    @property
    def uploads(self) -> list[tuple[int, bool]]:
        return self.uploads_since(0)

    def uploads_since(self, mark: int) -> list[tuple[int, bool]]:
        return [(int(e.query()["partNumber"]), "Content-MD5" in e.headers)
                for e in self.proxy.exchanges[mark:] if e.method == "PUT" and "partNumber" in e.query() and e.status == 200]

    @property
    def created(self) -> list[str]:
        return [re.search(rb"<UploadId>([^<]+)</UploadId>", e.body).group(1).decode()  # type: ignore[union-attr]
                for e in self.proxy.exchanges if e.method == "POST" and "uploads" in e.query() and e.status == 200]

    @property
    def completed(self) -> list[str]:
        return [unquote(e.query()["uploadId"]) for e in self.proxy.exchanges
                if e.method == "POST" and "uploadId" in e.query() and e.status == 200]


class CountingMd5:
    """A spy, not a stand-in: the real hashlib for the copier's module, counting the MD5 objects it makes."""

    def __init__(self) -> None:
        self.calls = 0

    def md5(self, *args: Any) -> Any:
        self.calls += 1
        return hashlib.md5(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(hashlib, name)


def no_uploads_left(pair: Any) -> bool:
    listed = pair.b.list_multipart_uploads(Bucket=pair.settings.region_b.bucket, Prefix=pair.prefix)
    return not listed.get("Uploads")


def copy_once(pair: Any, resume_dir: Path, *, attempts: int | None = None, wire: PartsWire | None = None,
              **faults: set[int]) -> tuple[Any, PartsWire, list[str]]:
    """One copy of ``parted.bin`` by a fresh copier whose destination is reached through
    PartsWire's proxy: the outcome, the wire's record, the source GETs."""
    own = wire is None
    wire = wire or PartsWire(pair.settings, **faults)
    if own:
        wire.proxy.start()
    try:
        copier, stats, gets = copier_for(pair, resume_dir, multipart_threshold=THRESHOLD,
                                         destination=through_proxy(pair, "destination", wire.proxy))
        if attempts is not None:
            copier.settings.object_attempts = attempts
        try:
            return copier.copy(source_info(pair, "parted.bin"), stats), wire, gets
        finally:
            copier.close()
    finally:
        if own:
            wire.proxy.stop()


def test_a_source_written_in_parts_is_copied_in_its_own_parts_and_checked_by_the_stores(
    platform: PlatformSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = make_pair(platform, "ownparts")
    src_etag = put_parted(pair.a, platform.region_a.bucket, f"{pair.prefix}/parted.bin")
    assert src_etag.endswith("-3")
    hashes = CountingMd5()
    monkeypatch.setattr(replication_copy, "hashlib", hashes)
    outcome, wire, gets = copy_once(pair, tmp_path / "uploads")
    assert outcome.status == "copied" and outcome.unchecked is None, outcome.error
    assert gets == [f"/{pair.prefix}/parted.bin"]  # one read
    assert hashes.calls == 0  # no byte hashed here: the stores' own MD5s are the check
    assert sorted(wire.uploads) == [(1, False), (2, False), (3, False)]  # its own 3 parts, no Content-MD5 to send
    dkey = f"{pair.prefix}/parted.bin"
    head = pair.b.head_object(Bucket=platform.region_b.bucket, Key=dkey)
    assert head["ETag"].strip('"') == src_etag  # the same parts, so the same ETag
    assert head["Metadata"]["llmr-parts"] == f"3:{5 * MIB}" and head["Metadata"]["llmr-source-etag"] == src_etag
    assert pair.b.get_object(Bucket=platform.region_b.bucket, Key=dkey)["Body"].read() == PARTED
    assert not list((tmp_path / "uploads").glob("*.json"))

    src_loc, dst_loc = load_location(pair.source), load_location(pair.destination)
    src, dst = list_location(src_loc), list_location(dst_loc)
    first = plan_replication(src, dst, delete=False)
    again = plan_replication(src, dst, delete=False, destination_metadata=read_metadata(dst_loc, first.needs_metadata))
    assert [o.key for o in again.in_sync] == ["parted.bin"]


def test_a_part_changed_on_the_way_to_the_destination_is_never_completed(platform: PlatformSettings, tmp_path: Path) -> None:
    """The destination's MD5 of a part changed in flight does not rebuild the source ETag: that
    upload is aborted, never completed, and the object is copied again with our own MD5s."""
    pair = make_pair(platform, "flipwrite")
    src_etag = put_parted(pair.a, platform.region_a.bucket, f"{pair.prefix}/parted.bin")
    outcome, wire, gets = copy_once(pair, tmp_path / "uploads", flip={2})
    assert outcome.status == "copied" and outcome.attempts == 1, outcome.error
    assert len(gets) == 2  # the read in the source's parts, then the hashed one
    assert len(wire.created) == 2 and wire.completed == wire.created[1:]  # the changed upload was never completed
    assert no_uploads_left(pair)  # it was aborted
    assert [sent for _, sent in wire.uploads] == [False] * 3 + [True] * 3  # the second copy sent its own MD5s
    dkey = f"{pair.prefix}/parted.bin"
    assert pair.b.get_object(Bucket=platform.region_b.bucket, Key=dkey)["Body"].read() == PARTED
    assert pair.b.head_object(Bucket=platform.region_b.bucket, Key=dkey)["ETag"].strip('"') == src_etag


def test_an_interrupted_copy_in_the_sources_parts_resumes_from_its_parts(platform: PlatformSettings, tmp_path: Path) -> None:
    pair = make_pair(platform, "ownresume")
    src_etag = put_parted(pair.a, platform.region_a.bucket, f"{pair.prefix}/parted.bin")
    wire = PartsWire(platform, refuse={3})  # one proxy for both runs: the same destination endpoint
    wire.proxy.start()
    try:
        first, _, _ = copy_once(pair, tmp_path / "uploads", attempts=1, wire=wire)
        assert first.status == "failed" and first.error, first  # part 3's connection reset on every attempt
        assert wire.proxy.counts["forced_reset"] >= 1
        assert len(list((tmp_path / "uploads").glob("*.json"))) == 1  # parts 1 and 2 recorded

        wire.refuse.clear()
        mark = len(wire.proxy.exchanges)
        second, _, _ = copy_once(pair, tmp_path / "uploads", wire=wire)
    finally:
        wire.proxy.stop()
    assert second.status == "copied" and second.parts_resumed == 2, second.error
    assert wire.uploads_since(mark) == [(3, False)]  # only the missing part; the ETag check covers the resumed ones
    head = pair.b.head_object(Bucket=platform.region_b.bucket, Key=f"{pair.prefix}/parted.bin")
    assert head["ETag"].strip('"') == src_etag
    assert pair.b.get_object(Bucket=platform.region_b.bucket, Key=f"{pair.prefix}/parted.bin")["Body"].read() == PARTED
    assert not list((tmp_path / "uploads").glob("*.json"))
