"""Planning a replication from two listings: checksum decides, deletes are guarded."""

import pytest

from tasks.replication_plan import (
    META_MD5,
    META_PARTS,
    META_SOURCE_ETAG,
    DeleteGuardTripped,
    Listing,
    ObjectInfo,
    batches,
    check_delete_guard,
    plan_replication,
)

MD5_A = "0" * 31 + "a"
MD5_B = "0" * 31 + "b"


def obj(key: str, size: int = 10, etag: str = MD5_A, t: float = 0.0) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag=etag, last_modified=t)


def listing(*objs: ObjectInfo, complete: bool = True) -> Listing:
    return Listing({o.key: o for o in objs}, complete=complete, error=None if complete else "boom")


def test_missing_changed_and_equal_objects() -> None:
    src = listing(obj("new"), obj("same"), obj("resized", size=11), obj("rewritten", etag=MD5_B))
    dst = listing(obj("same"), obj("resized"), obj("rewritten"), obj("stale"))
    plan = plan_replication(src, dst, delete=True)
    assert sorted(o.key for o in plan.copy) == ["new", "resized", "rewritten"]
    assert [o.key for o in plan.in_sync] == ["same"]
    assert [o.key for o in plan.delete] == ["stale"]


def test_same_size_different_bytes_is_copied_never_size_only() -> None:
    plan = plan_replication(listing(obj("k", etag=MD5_A)), listing(obj("k", etag=MD5_B)), delete=False)
    assert [o.key for o in plan.copy] == ["k"]


def test_newer_mtime_alone_does_not_trigger_a_copy() -> None:
    plan = plan_replication(listing(obj("k", t=100.0)), listing(obj("k", t=5.0)), delete=False)
    assert plan.copy == [] and len(plan.in_sync) == 1


def test_multipart_etags_need_destination_metadata() -> None:
    src = listing(obj("big", size=100, etag=MD5_A + "-3"))
    dst = listing(obj("big", size=100, etag=MD5_B + "-3"))
    first = plan_replication(src, dst, delete=False)
    assert first.needs_metadata == ["big"] and first.copy == []
    good = {"big": {META_SOURCE_ETAG: MD5_A + "-3", META_PARTS: "3:40"}}
    assert [o.key for o in plan_replication(src, dst, delete=False, destination_metadata=good).in_sync] == ["big"]
    stale = {"big": {META_SOURCE_ETAG: "something-else", META_PARTS: "3:40"}}
    assert [o.key for o in plan_replication(src, dst, delete=False, destination_metadata=stale).copy] == ["big"]
    # metadata copied onto a plain re-upload (a different object) does not pass for the copy
    replaced = listing(obj("big", size=100, etag=MD5_B))
    meta = {"big": {META_SOURCE_ETAG: MD5_A + "-3", META_MD5: MD5_A}}
    assert [o.key for o in plan_replication(src, replaced, delete=False, destination_metadata=meta).copy] == ["big"]
    # unanswered HEAD: copied, never assumed equal
    assert [o.key for o in plan_replication(src, dst, delete=False, destination_metadata={}).copy] == ["big"]


@pytest.mark.parametrize("which", ["source", "destination"])
def test_incomplete_listing_deletes_nothing(which: str) -> None:
    src = listing(obj("a"), complete=which != "source")
    dst = listing(obj("a"), obj("b"), obj("c"), complete=which != "destination")
    plan = plan_replication(src, dst, delete=True)
    assert plan.delete == []
    assert plan.delete_blocked and which in plan.delete_blocked


def test_delete_guard_count_and_fraction() -> None:
    src = listing(*[obj(f"k{i}") for i in range(4)])
    dst = listing(*[obj(f"k{i}") for i in range(10)])
    plan = plan_replication(src, dst, delete=True)
    assert len(plan.delete) == 6
    with pytest.raises(DeleteGuardTripped, match="max_delete_fraction.*6 of 10"):
        check_delete_guard(plan, 10, max_count=100, max_fraction=0.5)
    with pytest.raises(DeleteGuardTripped, match="max_delete_count"):
        check_delete_guard(plan, 10, max_count=5, max_fraction=1.0)
    check_delete_guard(plan, 10, max_count=6, max_fraction=0.6)


def test_batches_bound_objects_and_bytes() -> None:
    objs = [obj(f"k{i:03d}", size=10) for i in range(250)]
    out = batches(objs, max_objects=100, max_bytes=10**9)
    assert [len(b) for b in out] == [100, 100, 50]
    out = batches(objs, max_objects=1000, max_bytes=95)
    assert all(sum(o.size for o in b) <= 95 for b in out) and sum(len(b) for b in out) == 250
