"""What keeps data safe when the store fails mid-backup, a lease runs out or a restore meets a bad
chunk: a retried batch stores every chunk, a manifest never names an unindexed chunk, a lapsed
lease is lost for good (never quietly renewed), and a restore replaces an object only with
verified bytes."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import fsspec
import pytest

from tasks.backup import backup_batch, write_snapshot
from tasks.backup_engine import run_backup, scan_source
from tasks.backup_errors import CorruptObject, LockLost, RepositoryError, RepositoryLocked, RepositoryUnreachable
from tasks.backup_maintenance import execute_prune, plan_prune, verify_repository
from tasks.backup_manifest import FileEntry, Manifest, SourceInfo, utcnow
from tasks.backup_repository import PackWriter, RepoLock, Repository
from tasks.backup_retention import RetentionPolicy
from tasks.restore_engine import restore_files
from tests.unit.test_backup_engine import backup_dir, local_repo


class FlakyStore:
    """Fails the first write whose path contains ``part`` with a connection reset, then behaves."""

    def __init__(self, repo: Repository, part: str) -> None:
        self.real, self.part, self.failed = repo.write, part, 0
        repo.write = self.write  # type: ignore[method-assign]

    def write(self, path: str, data: bytes) -> None:
        if self.part in path and not self.failed:
            self.failed += 1
            raise ConnectionError("connection reset by peer")
        self.real(path, data)


class Source:
    def __init__(self, root: Path) -> None:
        self.url = f"file://{root}"

    def filesystem(self) -> fsspec.AbstractFileSystem:
        return fsspec.filesystem("file")


def _files(root: Path, count: int = 3, size: int = 3 << 20) -> list:
    root.mkdir()
    for i in range(count):
        (root / f"f{i}.bin").write_bytes(os.urandom(size))
    return scan_source(fsspec.filesystem("file"), str(root), f"file://{root}")[0]


def _manifest(entries: list[FileEntry]) -> Manifest:
    return Manifest(time=utcnow(), tool="t", sources=[SourceInfo(name="data", kind="storage", url="x")], files=entries)


@pytest.mark.parametrize("failing", ["/packs/", "/index/"])
def test_a_batch_retried_after_a_failed_write_stores_every_chunk(tmp_path: Path, failing: str) -> None:
    repo = local_repo(tmp_path / "repo")
    repo.config["pack_target_size"] = 4 << 20  # several packs per batch
    files = _files(tmp_path / "src")
    store = FlakyStore(repo, failing)
    writer = PackWriter(repo)  # one writer for the whole flow, as flows/backup.py passes it
    with pytest.raises(RepositoryUnreachable):
        backup_batch.fn(repo, writer, Source(tmp_path / "src"), files, "data", {}, 2)
    entries, _ = backup_batch.fn(repo, writer, Source(tmp_path / "src"), files, "data", {}, 2)  # Prefect's retry
    assert store.failed == 1
    manifest = _manifest(entries)
    assert manifest.referenced_chunks <= repo.index.keys()
    repo.save_snapshot(manifest)
    fresh = Repository(fsspec.filesystem("file"), str(tmp_path / "repo")).open()
    assert verify_repository(fresh, read_fraction=1.0).problems == []


def test_a_manifest_naming_an_unindexed_chunk_is_not_written(tmp_path: Path) -> None:
    repo = local_repo(tmp_path / "repo")
    repo.load_index()
    entry = FileEntry(path="data/x", type="file", size=5, mtime_ns=0, hash="00" * 32, chunks=["ab" * 32])
    with pytest.raises(RepositoryError, match=r"1 of its 1 chunks are in no indexed pack"):
        repo.save_snapshot(_manifest([entry]))
    assert repo.snapshot_ids() == []


def test_a_lapsed_lease_is_lost_not_renewed(tmp_path: Path) -> None:
    repo = local_repo(tmp_path / "repo")
    lock = RepoLock(repo, "backup", "me", lease=timedelta(seconds=0.2))
    lock.write()  # a lease nobody renews (the process stalled longer than the lease)
    time.sleep(0.3)
    with pytest.raises(LockLost, match="backup lock .* lost: its lease ran out"):
        lock.refresh()
    assert not lock.valid()
    with pytest.raises(LockLost):
        write_snapshot.fn(repo, lock, _manifest([]))
    assert repo.snapshot_ids() == []


def test_a_removed_lock_is_lost(tmp_path: Path) -> None:
    repo = local_repo(tmp_path / "repo")
    lock = repo.acquire_lock("backup")
    repo.fs.rm_file(lock.path)  # a prune took it for stale
    with pytest.raises(LockLost, match="was removed"):
        lock.check()
    lock.release()


def test_a_held_lock_is_renewed_for_work_longer_than_its_lease(tmp_path: Path) -> None:
    repo = local_repo(tmp_path / "repo")
    # Renewed every 0.5 s, so the renewer may stall up to 1.5 s (a loaded 2-core CI host starting
    # the test stack stalled it past a 0.4 s lease) before the lease lapses.
    lock = repo.acquire_lock("backup", lease=timedelta(seconds=2))
    first_expiry = lock.expires_at
    time.sleep(5)  # two and a half leases long
    assert lock.expires_at > first_expiry + timedelta(seconds=2)  # renewed, not just still young
    lock.check()
    with pytest.raises(RepositoryLocked, match="running backup"):
        repo.acquire_lock("prune")
    lock.release()
    assert repo.list_dir("locks") == []
    repo.acquire_lock("prune").release()


def test_a_prune_whose_lease_lapsed_deletes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(1 << 20))
    repo = local_repo(tmp_path / "repo")
    old_sid, _, _ = backup_dir(repo, src)
    (src / "a.bin").write_bytes(os.urandom(1 << 20))
    backup_dir(repo, src)
    repo.load_index()
    plan, kept = plan_prune(repo, RetentionPolicy(keep_last=1))
    assert plan.forget == [old_sid] and plan.delete_packs
    lock = RepoLock(repo, "prune", "me", lease=timedelta(seconds=0.1))
    lock.write()
    before = sorted(str(p) for p in (tmp_path / "repo").rglob("*") if p.is_file())
    time.sleep(0.2)
    with pytest.raises(LockLost, match="prune lock"):
        execute_prune(repo, plan, kept, lock.check)
    assert sorted(str(p) for p in (tmp_path / "repo").rglob("*") if p.is_file()) == before


def _memory_backup(root: str, data: bytes) -> tuple[fsspec.AbstractFileSystem, Repository, FileEntry]:
    mem = fsspec.filesystem("memory")
    mem.pipe({f"{root}/bucket/w.bin": data})
    repo = Repository(mem, f"{root}/repo")
    repo.init()
    repo.open()
    sid, _, _ = run_backup(repo, [("models", mem, f"{root}/bucket", f"memory:/{root}/bucket")])
    repo.load_index()
    return mem, repo, repo.load_snapshot(sid).files[0]


def test_a_remote_restore_that_fails_verification_leaves_the_object_there_untouched() -> None:
    good = os.urandom(1 << 20)
    mem, repo, entry = _memory_backup("/rot", good)
    loc = repo.index[entry.chunks[0]]
    pack = bytearray(mem.cat_file(repo.pack_path(loc.pack)))
    pack[loc.offset + loc.length // 2] ^= 1  # bit rot in the repository
    mem.pipe_file(repo.pack_path(loc.pack), bytes(pack))
    with pytest.raises(CorruptObject, match=entry.chunks[0]):
        restore_files(repo, [entry], mem, "/rot/bucket", "models", workers=1)  # into the original bucket
    assert mem.cat_file("/rot/bucket/w.bin") == good
    assert mem.find("/rot/bucket") == ["/rot/bucket/w.bin"]  # no partial object left behind
    mem.rm("/rot", recursive=True)


def test_a_remote_restore_replaces_the_object_with_verified_bytes() -> None:
    good = os.urandom(1 << 20)
    mem, repo, entry = _memory_backup("/ok", good)
    mem.pipe_file("/ok/bucket/w.bin", b"damaged")
    restore_files(repo, [entry], mem, "/ok/bucket", "models", workers=1)
    assert mem.cat_file("/ok/bucket/w.bin") == good
    assert mem.find("/ok/bucket") == ["/ok/bucket/w.bin"]
    mem.rm("/ok", recursive=True)


def test_a_chunk_missing_from_the_index_names_the_file(tmp_path: Path) -> None:
    _, repo, entry = _memory_backup("/lost", os.urandom(1 << 20))
    del repo.index[entry.chunks[-1]]  # its index file was lost
    with pytest.raises(CorruptObject, match=r"file 'models/w.bin': chunk .* is in no indexed pack"):
        restore_files(repo, [entry], fsspec.filesystem("file"), str(tmp_path / "out"), "models", workers=1)
    fsspec.filesystem("memory").rm("/lost", recursive=True)
