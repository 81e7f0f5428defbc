"""Above the multipart threshold, a source written in parts whose store reports their size is
copied in those same parts with no hashing in this process: the destination's MD5 of each part it
stored, composed, must rebuild the source's ETag before CompleteMultipartUpload (real moto
endpoints, real botocore)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import tasks.replication_copy as replication_copy
from deployments.settings import PlatformSettings
from tasks.replication import load_location
from tasks.replication_plan import plan_replication
from tasks.s3_listing import list_location, read_metadata
from tests.replication_helpers import MIB, PARTED, copier_for, make_pair, put_parted, source_info

pytestmark = pytest.mark.integration

THRESHOLD = 8 * MIB  # PARTED (11 MiB in 5 MiB parts) is above it


class PartsWire:
    """The destination client, recording each UploadPart (part number, whether it carried a
    Content-MD5) and each completed upload; ``flip`` changes one byte of those parts' bodies on
    their first upload, ``refuse`` fails those parts' uploads with a connection reset."""

    def __init__(self, client: Any, *, flip: set[int] = frozenset(), refuse: set[int] = frozenset()) -> None:
        self._client = client
        self.flip, self.refuse = set(flip), set(refuse)
        self.uploads: list[tuple[int, bool]] = []
        self.created: list[str] = []
        self.completed: list[str] = []

    def create_multipart_upload(self, **kwargs: Any) -> dict:
        out = self._client.create_multipart_upload(**kwargs)
        self.created.append(out["UploadId"])
        return out

    def upload_part(self, **kwargs: Any) -> dict:
        number = kwargs["PartNumber"]
        self.uploads.append((number, "ContentMD5" in kwargs))
        if number in self.refuse:
            raise ConnectionResetError(f"part {number}: connection reset")
        if number in self.flip:
            self.flip.discard(number)
            body = bytearray(kwargs["Body"].read())
            body[len(body) // 2] ^= 0xFF
            kwargs["Body"] = bytes(body)
        return self._client.upload_part(**kwargs)

    def complete_multipart_upload(self, **kwargs: Any) -> dict:
        self.completed.append(kwargs["UploadId"])
        return self._client.complete_multipart_upload(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class CountingMd5:
    """hashlib for the copier's module, counting MD5 objects made over data."""

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


def copy_once(pair: Any, resume_dir: Path, *, attempts: int | None = None, **faults: set[int]) -> tuple[Any, PartsWire, list[str]]:
    """One copy of ``parted.bin`` by a fresh copier whose destination goes through PartsWire:
    the outcome, the wire's record, the source GETs."""
    copier, stats, gets = copier_for(pair, resume_dir, multipart_threshold=THRESHOLD)
    copier.dst = wire = PartsWire(copier.dst, **faults)
    if attempts is not None:
        copier.settings.object_attempts = attempts
    try:
        return copier.copy(source_info(pair, "parted.bin"), stats), wire, gets
    finally:
        copier.close()


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
    first, _, _ = copy_once(pair, tmp_path / "uploads", attempts=1, refuse={3})
    assert first.status == "failed" and "connection reset" in (first.error or "")
    assert len(list((tmp_path / "uploads").glob("*.json"))) == 1  # parts 1 and 2 recorded

    second, wire, _ = copy_once(pair, tmp_path / "uploads")
    assert second.status == "copied" and second.parts_resumed == 2, second.error
    assert wire.uploads == [(3, False)]  # only the missing part; the ETag check covers the resumed ones
    head = pair.b.head_object(Bucket=platform.region_b.bucket, Key=f"{pair.prefix}/parted.bin")
    assert head["ETag"].strip('"') == src_etag
    assert pair.b.get_object(Bucket=platform.region_b.bucket, Key=f"{pair.prefix}/parted.bin")["Body"].read() == PARTED
    assert not list((tmp_path / "uploads").glob("*.json"))
