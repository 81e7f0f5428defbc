"""Cross-region replication on the real local platform (two moto S3 endpoints, Prefect server)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

from deployments.settings import PlatformSettings
from flows.replication import PROGRESS_ARTIFACT_KEY, REPORT_ARTIFACT_KEY, ReplicationIncomplete, ReplicationParams, replicate, replication_status
from flows.replication import StatusParams
from tasks.errors import ConfigurationError
from tasks.replication import load_location
from tasks.replication_copy import CopySettings, copy_objects
from tasks.replication_plan import DeleteGuardTripped
from tasks.s3_listing import list_location
from tests.fault_proxy import FaultProxy
from tests.replication_helpers import (
    list_keys,
    make_pair,
    md5,
    put_all,
    rclone_check,
    save_target,
    seeded_objects,
    through_proxy,
)

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def params(pair, tmp_path: Path, **kw) -> ReplicationParams:  # noqa: ANN001
    base = dict(source=pair.source, destinations=[pair.destination], resume_dir=str(tmp_path / "uploads"),
                multipart_threshold_mib=8, part_size_mib=5)
    base.update(kw)
    return ReplicationParams(**base)


def assert_identical(pair, objects: dict[str, bytes]) -> None:  # noqa: ANN001
    s = pair.settings
    dst = list_keys(pair.b, s.region_b.bucket, pair.prefix)
    assert set(dst) == set(objects)
    assert all(dst[k][0] == len(v) for k, v in objects.items())
    check = rclone_check(s, pair.prefix)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "0 differences found" in check.stderr


def progress_artifacts(flow_run_id: object) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[PROGRESS_ARTIFACT_KEY]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def test_thousands_of_mixed_objects_replicate_identically_and_a_rerun_copies_nothing(
    platform: PlatformSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    pair = make_pair(platform, "mixed")
    objects = seeded_objects(2000, seed=1, sizes=(0, 96 * 1024), large=[12 * MIB, 9 * MIB + 17])
    put_all(pair.a, platform.region_a.bucket, pair.prefix, objects)

    caplog.set_level("INFO")
    state = replicate(params(pair, tmp_path, batch_objects=700), return_state=True)
    report = state.result()
    d = report.destinations[0]
    # progress while it ran: a log line per batch, and a bar that ends full
    lines = [r.getMessage() for r in caplog.records if ": batch " in r.getMessage()]
    total = f"{sum(len(v) for v in objects.values()) / MIB:.1f} MiB"
    assert [line.split(": batch ")[1].split(",")[0] for line in lines] == ["1/3", "2/3", "3/3"], lines
    assert lines[-1].endswith(f"2,002/2,002 objects, {total}/{total} (100%), 0 failed"), lines[-1]
    bars = progress_artifacts(state.state_details.flow_run_id)
    assert [(a.type, a.data) for a in bars] == [("progress", 100.0)]
    assert d.copied_objects == len(objects) and d.failed == []
    assert d.copied_bytes == sum(len(v) for v in objects.values())
    assert d.lag.count == len(objects) and 0 <= d.lag.p50_s <= d.lag.p99_s <= d.lag.max_s
    assert d.pending_objects == 0
    assert_identical(pair, objects)
    # the large objects went in parts and carry the rclone-readable MD5 and our source ETag
    head = pair.b.head_object(Bucket=platform.region_b.bucket, Key=f"{pair.prefix}/large/blob-0.bin")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["Metadata"]["llmr-source-etag"] == md5(objects["large/blob-0.bin"])

    again_state = replicate(params(pair, tmp_path), return_state=True)
    d2 = again_state.result().destinations[0]
    assert (d2.copied_objects, d2.deleted_objects, d2.skipped_objects) == (0, 0, len(objects))
    assert progress_artifacts(again_state.state_details.flow_run_id) == []  # nothing to copy: no bar

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[REPORT_ARTIFACT_KEY])))
    assert arts, "no replication-report artifact"


def test_medium_objects_stream_through_one_verified_put_and_a_rerun_copies_nothing(platform: PlatformSettings, tmp_path: Path) -> None:
    """Below the multipart threshold: plain-ETag sources and a source written in parts (read once,
    its part MD5s rebuilding the source ETag on the way) land as single objects."""
    pair = make_pair(platform, "medium")
    objects = seeded_objects(3, seed=5, sizes=(5 * MIB, 6 * MIB))
    put_all(pair.a, platform.region_a.bucket, pair.prefix, objects)
    parted = bytes(range(256)) * (48 * 1024) + b"tail"  # 12 MiB + 4 bytes, written in 5 MiB parts
    key = f"{pair.prefix}/parted.bin"
    rclone_md5 = base64.b64encode(hashlib.md5(parted).digest()).decode()  # what rclone writes on its own multipart uploads
    up = pair.a.create_multipart_upload(Bucket=platform.region_a.bucket, Key=key, Metadata={"md5chksum": rclone_md5})
    etags = [pair.a.upload_part(Bucket=platform.region_a.bucket, Key=key, UploadId=up["UploadId"], PartNumber=n,
                                Body=parted[(n - 1) * 5 * MIB:n * 5 * MIB])["ETag"] for n in (1, 2, 3)]
    pair.a.complete_multipart_upload(Bucket=platform.region_a.bucket, Key=key, UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    objects["parted.bin"] = parted

    report = replicate(params(pair, tmp_path, multipart_threshold_mib=64))
    d = report.destinations[0]
    assert d.copied_objects == len(objects) and d.failed == []
    assert d.unchecked_reads == []  # moto reports part 1's size: every read was checked
    head = pair.b.head_object(Bucket=platform.region_b.bucket, Key=key)
    assert head["ETag"].strip('"') == md5(parted)  # one PUT: the destination's own MD5 of the bytes
    assert head["Metadata"]["llmr-source-etag"].endswith("-3") and head["Metadata"]["llmr-md5-in-tag"] == "1"
    tags = pair.b.get_object_tagging(Bucket=platform.region_b.bucket, Key=key)["TagSet"]
    assert tags == [{"Key": "llmr-md5", "Value": md5(parted)}]  # known only after the PUT, so a tag
    assert_identical(pair, objects)
    again = replicate(params(pair, tmp_path, multipart_threshold_mib=64))
    assert (again.destinations[0].copied_objects, again.destinations[0].skipped_objects) == (0, len(objects))


def put_in_parts(client, bucket: str, key: str, data: bytes, part: int) -> None:  # noqa: ANN001
    up = client.create_multipart_upload(Bucket=bucket, Key=key)
    etags = [client.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=data[i:i + part])["ETag"]
             for n, i in enumerate(range(0, len(data), part), 1)]
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})


def test_a_source_store_that_does_not_report_part_sizes_still_copies_and_names_the_unchecked_reads(
    platform: PlatformSettings, tmp_path: Path,
) -> None:
    """Stores that ignore ``partNumber`` leave the part size of a source written in parts to
    guesses: the common tools' sizes, then the smallest whole MiBs, all hashed in the one read.
    A guess that rebuilds the ETag checks the read. When none does, that proves nothing about the
    bytes, so the object is copied (the destination still checks every byte read) and listed as
    an unchecked read, rather than failed on every run."""
    proxy = FaultProxy(platform.url(platform.region_a.s3_port), ignore_part_number=True).start()
    try:
        pair = make_pair(platform, "nopartsize", src_endpoint=proxy.url)
        rng = random.Random(31)
        layouts = {  # key: (size, part size written with); the guesses, likeliest first, in the comment
            "odd-parts-in-parts.bin": (30 * MIB + 7, 22 * MIB),  # 16, 25, 17, 18 MiB; above the threshold
            "odd-parts-one-put.bin": (20 * MIB + 7, 19 * MIB),  # 16, 11, 12, 13 MiB; one streamed PUT
            "second-guess-in-parts.bin": (30 * MIB + 7, 17 * MIB),  # 17 MiB, hashed on the side
            "third-guess-one-put.bin": (20 * MIB + 7, 12 * MIB),  # 12 MiB, hashed on the side
            "first-guess.bin": (12 * MIB + 4, 5 * MIB),  # 5, 6 MiB
        }
        objects = {key: rng.randbytes(size) for key, (size, _) in layouts.items()}
        for key, (_, part) in layouts.items():
            put_in_parts(pair.a, platform.region_a.bucket, f"{pair.prefix}/{key}", objects[key], part)

        report = replicate(params(pair, tmp_path, multipart_threshold_mib=24))
        d = report.destinations[0]
        assert d.failed == [] and d.copied_objects == len(objects)
        assert sorted(d.unchecked_reads) == ["odd-parts-in-parts.bin", "odd-parts-one-put.bin"]
        assert proxy.counts["part_number_ignored"] >= len(objects)  # every part lookup went unanswered
        assert report.table_rows()[0]["unchecked_reads"] == 2
        assert_identical(pair, objects)
        again = replicate(params(pair, tmp_path, multipart_threshold_mib=24))
        assert (again.destinations[0].copied_objects, again.destinations[0].skipped_objects) == (0, len(objects))
    finally:
        proxy.stop()


def test_source_bytes_changed_on_the_wire_are_never_copied_on_any_path(platform: PlatformSettings, tmp_path: Path) -> None:
    """A byte flipped in the source's answer (after the store computed its checksums) must fail
    the object on every copy path, and leave nothing at the destination: the bytes read are
    checked against the source's own ETag (plain, one part, or rebuilt from part MD5s)."""
    corrupt = {"small-plain.bin", "small-one-part.bin", "medium-one-part.bin", "medium-parted.bin", "large-parted.bin",
               "large-big-parts.bin"}
    proxy = FaultProxy(platform.url(platform.region_a.s3_port),
                       corrupt_when=lambda r: r.method == "GET" and r.path.rsplit("/", 1)[-1] in corrupt).start()
    try:
        pair = make_pair(platform, "wireflip", src_endpoint=proxy.url)
        rng = random.Random(37)
        objects = {"small-plain.bin": rng.randbytes(3000), "small-one-part.bin": rng.randbytes(3000),
                   "medium-one-part.bin": rng.randbytes(4 * MIB + 100),  # streamed; its one part is under 5 MiB
                   "medium-parted.bin": rng.randbytes(12 * MIB + 4), "large-parted.bin": rng.randbytes(20 * MIB + 7),
                   "large-big-parts.bin": rng.randbytes(40 * MIB + 3),  # 17 MiB parts: more than the 16 MiB buffers
                   "untouched.bin": rng.randbytes(3000)}
        bucket = platform.region_a.bucket
        for key in ("small-plain.bin", "untouched.bin"):
            pair.a.put_object(Bucket=bucket, Key=f"{pair.prefix}/{key}", Body=objects[key])
        for key in ("small-one-part.bin", "medium-one-part.bin", "medium-parted.bin", "large-parted.bin"):
            put_in_parts(pair.a, bucket, f"{pair.prefix}/{key}", objects[key], 5 * MIB)
        put_in_parts(pair.a, bucket, f"{pair.prefix}/large-big-parts.bin", objects["large-big-parts.bin"], 17 * MIB)

        with pytest.raises(ReplicationIncomplete) as info:
            replicate(params(pair, tmp_path, multipart_threshold_mib=16, buffer_mib=16))
        d = info.value.report.destinations[0]
        errors = {f.key: f.error for f in d.failed}
        assert set(errors) == corrupt and d.copied_objects == 1
        assert all("do not match" in e and "ETag" in e for e in errors.values()), errors
        assert proxy.counts["corrupted"] >= len(corrupt)
        assert set(list_keys(pair.b, platform.region_b.bucket, pair.prefix)) == {"untouched.bin"}
        proxy.corrupt_when = None  # the wire heals: the next run copies them
        again = replicate(params(pair, tmp_path, multipart_threshold_mib=16, buffer_mib=16))
        assert again.destinations[0].copied_objects == len(corrupt) and again.destinations[0].unchecked_reads == []
        assert_identical(pair, objects)
    finally:
        proxy.stop()


def test_a_corrupted_destination_object_is_detected_and_repaired(platform: PlatformSettings, tmp_path: Path) -> None:
    pair = make_pair(platform, "corrupt")
    objects = seeded_objects(40, seed=2, sizes=(1000, 5000), large=[11 * MIB])
    put_all(pair.a, platform.region_a.bucket, pair.prefix, objects)
    replicate(params(pair, tmp_path))
    bucket = platform.region_b.bucket
    small = "d0/obj-00000.bin"
    flipped = bytearray(objects[small])
    flipped[10] ^= 0xFF
    pair.b.put_object(Bucket=bucket, Key=f"{pair.prefix}/{small}", Body=bytes(flipped))
    # the large one rewritten with different bytes of the same size, keeping our metadata
    head = pair.b.head_object(Bucket=bucket, Key=f"{pair.prefix}/large/blob-0.bin")
    pair.b.put_object(Bucket=bucket, Key=f"{pair.prefix}/large/blob-0.bin", Body=b"\0" * (11 * MIB), Metadata=head["Metadata"])
    assert rclone_check(platform, pair.prefix).returncode != 0

    report = replicate(params(pair, tmp_path))
    assert report.destinations[0].copied_objects == 2
    assert_identical(pair, objects)


def test_faults_on_the_wire_end_identical_with_bounded_retries(platform: PlatformSettings, tmp_path: Path) -> None:
    proxies = [FaultProxy(platform.url(r.s3_port), fault_rate=0.10, seed=11 + i).start()
               for i, r in enumerate((platform.region_a, platform.region_b))]
    try:
        pair = make_pair(platform, "faults", src_endpoint=proxies[0].url, dst_endpoint=proxies[1].url)
        objects = seeded_objects(300, seed=3, sizes=(100, 20_000), large=[11 * MIB])
        put_all(pair.a, platform.region_a.bucket, pair.prefix, objects)
        report = replicate(params(pair, tmp_path, concurrency=8, max_request_attempts=10, list_page_size=100))
    finally:
        for p in proxies:
            p.stop()
    d = report.destinations[0]
    injected = sum(p.counts[k] for p in proxies for k in ("slowdown", "internal", "reset"))
    requests = sum(p.counts["requests"] for p in proxies)
    assert injected >= 20, proxies[0].counts
    assert d.failed == [] and d.copied_objects == len(objects)
    assert d.retries >= injected * 0.5  # the faults were seen and retried ...
    assert d.retries <= injected + 3 * len(objects)  # ... and retries stay bounded
    assert requests < 3 * (len(objects) * 2 + 40)
    assert d.throttles > 0 and d.lowest_concurrency < 8  # concurrency backed off under throttling
    assert_identical(pair, objects)


def test_a_listing_that_fails_midway_deletes_nothing(platform: PlatformSettings, tmp_path: Path) -> None:
    def second_page(request: web.Request) -> bool:
        return request.method == "GET" and "continuation-token" in request.query

    proxy = FaultProxy(platform.url(platform.region_a.s3_port), fail_when=second_page).start()
    try:
        pair = make_pair(platform, "listfail", src_endpoint=proxy.url)
        objects = seeded_objects(60, seed=4, sizes=(10, 100))
        put_all(pair.a, platform.region_a.bucket, pair.prefix, objects)
        extra = {f"only-at-destination/{i}.bin": b"x" for i in range(5)}
        put_all(pair.b, platform.region_b.bucket, pair.prefix, extra)
        with pytest.raises(ReplicationIncomplete) as caught:
            replicate(params(pair, tmp_path, list_page_size=25, max_request_attempts=2))
    finally:
        proxy.stop()
    d = caught.value.report.destinations[0]
    assert not d.source_listing_complete and d.deletes_blocked and d.deleted_objects == 0
    dst = list_keys(pair.b, platform.region_b.bucket, pair.prefix)
    assert set(extra) <= set(dst)  # nothing deleted
    assert proxy.counts["forced_500"] >= 1


def test_the_max_delete_guard_stops_a_run_that_would_delete_sixty_percent(platform: PlatformSettings, tmp_path: Path) -> None:
    pair = make_pair(platform, "guard")
    objects = seeded_objects(10, seed=5, sizes=(10, 100))
    put_all(pair.a, platform.region_a.bucket, pair.prefix, objects)
    replicate(params(pair, tmp_path))
    doomed = sorted(objects)[:6]
    pair.a.delete_objects(Bucket=platform.region_a.bucket,
                          Delete={"Objects": [{"Key": f"{pair.prefix}/{k}"} for k in doomed]})
    pair.a.put_object(Bucket=platform.region_a.bucket, Key=f"{pair.prefix}/new.bin", Body=b"new")
    with pytest.raises(DeleteGuardTripped, match="6 of 10"):
        replicate(params(pair, tmp_path, max_delete_fraction=0.5))
    dst = list_keys(pair.b, platform.region_b.bucket, pair.prefix)
    assert set(dst) == set(objects)  # nothing deleted, nothing copied

    report = replicate(params(pair, tmp_path, max_delete_fraction=0.7, quarantine_days=3))
    d = report.destinations[0]
    assert (d.deleted_objects, d.quarantined_objects, d.copied_objects) == (6, 6, 1)
    expires = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)).isoformat()
    quarantined = pair.b.list_objects_v2(Bucket=platform.region_b.bucket, Prefix=f".llmr-quarantine/{expires}/{pair.prefix}/")
    assert sorted(o["Key"].rsplit(pair.prefix + "/", 1)[1] for o in quarantined.get("Contents", [])) == doomed


def test_excluded_prefixes_are_neither_copied_nor_deleted(platform: PlatformSettings, tmp_path: Path) -> None:
    """As region-b's own backup repository in the scheduled run: deletes replicate everywhere else."""
    pair = make_pair(platform, "exclude")
    objects = seeded_objects(4, seed=8, sizes=(10, 100))
    put_all(pair.a, platform.region_a.bucket, pair.prefix, objects)
    put_all(pair.a, platform.region_a.bucket, pair.prefix, {"scratch/only-in-a.bin": b"not replicated"})
    only_b = {"backups/llm-resilience/config.json": b"{}", "backups/llm-resilience/packs/ab": b"pack", "stale.bin": b"gone"}
    put_all(pair.b, platform.region_b.bucket, pair.prefix, only_b)
    report = replicate(params(pair, tmp_path, exclude_prefixes=["backups", "/scratch/"], max_delete_fraction=1))
    d = report.destinations[0]
    assert (d.copied_objects, d.deleted_objects) == (4, 1)
    dst = list_keys(pair.b, platform.region_b.bucket, pair.prefix)
    assert set(dst) == set(objects) | {"backups/llm-resilience/config.json", "backups/llm-resilience/packs/ab"}
    [status] = replication_status(StatusParams(source=pair.source, destinations=[pair.destination], prefix="",
                                               exclude_prefixes=["backups", "scratch"]))
    assert (status.pending_objects, status.pending_deletes) == (0, 0)
    with pytest.raises(ValueError, match=r"exclude_prefixes\[0\]"):
        params(pair, tmp_path, exclude_prefixes=["a/../.."])


def test_a_destination_that_refuses_every_write_stops_the_run_and_deletes_nothing(platform: PlatformSettings,
                                                                                  tmp_path: Path) -> None:
    """Keys that may list and read the destination but not write it pass the preflight (HEAD bucket);
    the run stops after ``abort_after_refusals`` refused objects instead of sending one refused PUT
    per object, names the cause once, deletes nothing, and leaves everything pending for the next run."""
    pair = make_pair(platform, "refused")
    objects = seeded_objects(300, seed=41, sizes=(10, 2000))
    put_all(pair.a, platform.region_a.bucket, pair.prefix, objects)
    put_all(pair.b, platform.region_b.bucket, pair.prefix, {"stale.bin": b"the source no longer has this"})
    proxy = FaultProxy(platform.url(platform.region_b.s3_port), deny_when=lambda r: r.method in {"PUT", "POST"}).start()
    try:
        refused = through_proxy(pair, "destination", proxy)
        with pytest.raises(ReplicationIncomplete, match="stopped: .*AccessDenied") as info:
            replicate(params(pair, tmp_path, destinations=[refused], abort_after_refusals=10, concurrency=4,
                             batch_objects=100, max_delete_fraction=1))
        d = info.value.report.destinations[0]
        assert d.aborted is not None and "PutObject: AccessDenied" in d.aborted
        assert 10 <= d.failed_objects < 10 + 4, "the refusal that trips it, and what other workers had started"
        assert proxy.counts["denied"] == d.failed_objects, "one refused request per object tried: no retries"
        assert (d.copied_objects, d.not_attempted_objects) == (0, 300 - d.failed_objects)
        assert (d.pending_objects, d.pending_bytes) == (300, sum(len(v) for v in objects.values()))
        assert d.deleted_objects == 0 and d.deletes_blocked is not None and "not attempted" in d.deletes_blocked
    finally:
        proxy.stop()
    assert set(list_keys(pair.b, platform.region_b.bucket, pair.prefix)) == {"stale.bin"}
    report = replicate(params(pair, tmp_path, max_delete_fraction=1))  # keys that may write: everything goes
    assert (report.destinations[0].copied_objects, report.destinations[0].deleted_objects) == (300, 1)
    assert_identical(pair, objects)


def test_bad_input_is_refused_before_anything_is_copied(platform: PlatformSettings, tmp_path: Path) -> None:
    pair = make_pair(platform, "badinput")
    put_all(pair.a, platform.region_a.bucket, pair.prefix, seeded_objects(3, seed=6))
    save_target(platform, "badinput-same", platform.region_a.bucket, pair.prefix, platform.url(platform.region_a.s3_port))
    save_target(platform, "badinput-inside", platform.region_a.bucket, pair.prefix + "/d0", platform.url(platform.region_a.s3_port))
    save_target(platform, "badinput-nobucket", "no-such-bucket-here", "x", platform.url(platform.region_b.s3_port))
    proxy = FaultProxy(platform.url(platform.region_b.s3_port), deny_access_key="wrong-key").start()
    try:
        save_target(platform, "badinput-badcreds", platform.region_b.bucket, pair.prefix, proxy.url, key_id="wrong-key")
        for dest, message in [("badinput-same", "same place"), ("badinput-inside", "overlapping"),
                              ("badinput-nobucket", "does not exist"), ("badinput-badcreds", "credentials refused")]:
            with pytest.raises(ConfigurationError, match=message):
                replicate(params(pair, tmp_path, destinations=[dest]))
        # the data sits inside the quarantine: listings would skip all of it, expiry would delete it
        with pytest.raises(ConfigurationError, match="choose a quarantine prefix outside the replicated data"):
            replicate(params(pair, tmp_path, quarantine_prefix=pair.prefix.split("/")[0]))
    finally:
        proxy.stop()
    assert list_keys(pair.b, platform.region_b.bucket, pair.prefix) == {}


def sse_kms_sizes() -> dict[str, bytes]:
    """One object per copy path at params(): in memory, one streamed PUT, in parts."""
    rng = random.Random(23)
    return {"kms/small.bin": rng.randbytes(3000), "kms/medium.bin": rng.randbytes(5 * MIB),
            "kms/large.bin": rng.randbytes(11 * MIB)}


def test_sse_kms_source_objects_fail_by_name_at_once_and_the_rest_copies(platform: PlatformSettings, tmp_path: Path) -> None:
    """S3 gives SSE-KMS objects ETags that are not MD5s (moto does not emulate that, but it does
    report the encryption): they are refused with an error that says why, not retried, and never
    half-written; the other objects of the run are copied."""
    pair = make_pair(platform, "kmssrc")
    plain = seeded_objects(4, seed=22, sizes=(100, 3000))
    put_all(pair.a, platform.region_a.bucket, pair.prefix, plain)
    kms = sse_kms_sizes()
    for key, body in kms.items():
        pair.a.put_object(Bucket=platform.region_a.bucket, Key=f"{pair.prefix}/{key}", Body=body, ServerSideEncryption="aws:kms")

    with pytest.raises(ReplicationIncomplete) as info:
        replicate(params(pair, tmp_path))
    d = info.value.report.destinations[0]
    assert d.copied_objects == len(plain)
    errors = {f.key: f.error for f in d.failed}
    assert set(errors) == set(kms)
    assert all(e.startswith(f"{k}: encrypted with aws:kms at the source") for k, e in errors.items()), errors
    assert d.retries == 0  # the same answer on every attempt: not retried
    assert set(list_keys(pair.b, platform.region_b.bucket, pair.prefix)) == set(plain)
    assert pair.b.list_multipart_uploads(Bucket=platform.region_b.bucket, Prefix=pair.prefix).get("Uploads", []) == []


def test_a_destination_encrypting_with_sse_kms_is_refused_and_keeps_nothing(platform: PlatformSettings, tmp_path: Path) -> None:
    pair = make_pair(platform, "kmsdst")
    objects = sse_kms_sizes()
    put_all(pair.a, platform.region_a.bucket, pair.prefix, objects)
    bucket = "kms-default-dst"
    b = pair.b
    b.create_bucket(Bucket=bucket)
    b.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    try:
        save_target(platform, "kmsdst-kms", bucket, pair.prefix, platform.url(platform.region_b.s3_port))
        # The flow refuses the bucket before it copies anything ...
        with pytest.raises(ConfigurationError, match=r"storage-target/kmsdst-kms: bucket 'kms-default-dst' encrypts new objects with aws:kms"):
            replicate(params(pair, tmp_path, destinations=["kmsdst-kms"]))
        assert list_keys(b, bucket, pair.prefix) == {}
        # ... and below the flow (a default set after the run began, or hidden from
        # GetBucketEncryption), each write the store encrypted is removed and named.
        source, destination = load_location(pair.source), load_location("kmsdst-kms")
        listing = list_location(source)
        settings = CopySettings(multipart_threshold=8 * MIB, part_size=5 * MIB, resume_dir=tmp_path / "uploads")
        result = copy_objects(source, destination, list(listing.objects.values()), settings)
        assert sorted(o.key for o in result.outcomes) == sorted(objects)
        for o in result.outcomes:
            assert (o.status, o.attempts) == ("failed", 1), o
            assert o.error.startswith(f"{o.key}: encrypted with aws:kms at the destination"), o
        assert list_keys(b, bucket, pair.prefix) == {}
        assert b.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    finally:
        for page in b.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                b.delete_object(Bucket=bucket, Key=o["Key"])
        b.delete_bucket(Bucket=bucket)


def test_sigkill_mid_run_then_rerun_is_identical_and_never_shows_a_partial_object(platform: PlatformSettings, tmp_path: Path) -> None:
    # Uploads of part 2 onwards are held at a proxy until the kill, so the kill always lands
    # mid-object: after a part was recorded, before any large copy could complete.
    gate = FaultProxy(platform.url(platform.region_b.s3_port),
                      hold_when=lambda r: r.method == "PUT" and r.query.get("partNumber", "1") != "1").start()
    pair = make_pair(platform, "sigkill", dst_endpoint=gate.url)
    objects = seeded_objects(300, seed=7, sizes=(1000, 40_000), large=[25 * MIB, 25 * MIB])
    put_all(pair.a, platform.region_a.bucket, pair.prefix, objects)
    # the second one written in parts: copied in its own parts, checked by the stores' part MD5s
    put_in_parts(pair.a, platform.region_a.bucket, f"{pair.prefix}/large/blob-1.bin", objects["large/blob-1.bin"], 5 * MIB)
    expected = {k: (len(v), md5(v)) for k, v in objects.items()}
    resume_dir = tmp_path / "uploads"
    script = (
        "import sys; from flows.replication import replicate, ReplicationParams;"
        f"replicate(ReplicationParams(source={pair.source!r}, destinations=[{pair.destination!r}],"
        f" resume_dir={str(resume_dir)!r}, concurrency=2, large_concurrency=2, multipart_threshold_mib=8, part_size_mib=5))"
    )
    bad: list[str] = []
    seen: set[str] = set()
    passes: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # every object ever listed at the destination is whole and verified
        while not stop.is_set():
            try:
                for key, (size, etag) in list_keys(pair.b, platform.region_b.bucket, pair.prefix).items():
                    seen.add(key)
                    want_size, want_md5 = expected.get(key, (None, None))
                    if size != want_size or ("-" not in etag and etag != want_md5):
                        bad.append(f"{key}: {size} bytes, etag {etag}")
            except Exception as exc:  # noqa: BLE001 - a watcher that died would prove nothing: it fails the test
                bad.append(f"watcher: {type(exc).__name__}: {exc}")
                return
            passes.append(1)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2], env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            records = list(resume_dir.glob("*.json")) if resume_dir.exists() else []
            # a multipart copy has recorded finished parts, and a later part is held at the gate
            # (part 1 can be recorded before part 2 is sent): kill it mid-object
            if gate.counts["held"] >= 1 and any(json.loads(r.read_text()).get("parts") for r in records):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the flow finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        at_kill = list_keys(pair.b, platform.region_b.bucket, pair.prefix)
        assert len(at_kill) < len(objects)
        assert not any(k.startswith("large/") for k in at_kill) and gate.counts["held"] >= 1
        gate.release()
        report = replicate(params(pair, tmp_path, resume_dir=str(resume_dir)))
    finally:
        stop.set()
        watcher.join(10)
        if proc.poll() is None:
            proc.kill()
        gate.stop()
    d = report.destinations[0]
    assert d.failed == [] and d.copied_objects == len(objects) - len(at_kill)
    assert d.resumed_parts >= 1  # the interrupted large copy resumed from its completed parts
    assert bad == [], bad[:5]
    assert len(passes) > 1 and seen  # it watched the destination while the copies ran
    assert_identical(pair, objects)
    assert not list(resume_dir.glob("*.json"))


def test_replication_status_reports_pending_without_copying(platform: PlatformSettings, tmp_path: Path) -> None:
    pair = make_pair(platform, "status")
    put_all(pair.a, platform.region_a.bucket, pair.prefix, seeded_objects(5, seed=8, sizes=(100, 100)))
    replicate(params(pair, tmp_path))
    put_all(pair.a, platform.region_a.bucket, pair.prefix, {"late/1.bin": b"a" * 300, "late/2.bin": b"b" * 700})
    time.sleep(1.1)
    [status] = replication_status(StatusParams(source=pair.source, destinations=[pair.destination]))
    assert (status.pending_objects, status.pending_bytes, status.in_sync_objects) == (2, 1000, 5)
    assert status.current_lag_s >= 1.0 and status.listings_complete
    assert "late/1.bin" not in list_keys(pair.b, platform.region_b.bucket, pair.prefix)
