"""Backup/restore engine on local directories and memory://, without a Prefect server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fsspec
import pytest
import zstandard

from tasks.backup_engine import run_backup
from tasks.backup_errors import CorruptObject, RepositoryError, RepositoryLocked, SnapshotNotFound, UnsafePath
from tasks.backup_maintenance import execute_prune, plan_prune, scrub_slice, verify_repository
from tasks.backup_manifest import FileEntry, Manifest, SourceInfo, utcnow
from tasks.backup_repository import PackWriter, Repository
from tasks.backup_retention import RetentionPolicy
from tasks.restore_engine import restore_files
from tests.unit.backup_data import change_one_percent, make_tree, tree_bytes


def local_repo(path: Path) -> Repository:
    repo = Repository(fsspec.filesystem("file"), str(path))
    repo.init()
    return repo.open()


def backup_dir(repo: Repository, src: Path, name: str = "data"):  # noqa: ANN201
    return run_backup(repo, [(name, fsspec.filesystem("file"), str(src), f"file://{src}")], workers=2)


def restore_all(repo: Repository, sid: str, dest: Path, source: str = "data") -> None:
    repo.load_index()
    manifest = repo.load_snapshot(sid)
    restore_files(repo, manifest.files, fsspec.filesystem("file"), str(dest), source, workers=2)


def test_backup_wipe_restore_is_byte_identical(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    expected = tree_bytes(src)
    repo = local_repo(tmp_path / "repo")
    sid, stats, _ = backup_dir(repo, src)
    assert stats.files == len(expected)
    import shutil
    shutil.rmtree(src)
    restore_all(repo, sid, tmp_path / "restored")
    assert tree_bytes(tmp_path / "restored") == expected


def test_memory_source_and_target(tmp_path: Path) -> None:
    mem = fsspec.filesystem("memory")
    mem.pipe({"/msrc/a.txt": b"hello" * 1000, "/msrc/sub/b.bin": os.urandom(300_000), "/msrc/empty": b""})
    repo = Repository(mem, "/mrepo")
    repo.init()
    repo.open()
    sid, stats, _ = run_backup(repo, [("m", mem, "/msrc", "memory://msrc")])
    assert stats.files == 3
    repo.load_index()
    restore_files(repo, repo.load_snapshot(sid).files, mem, "/mout", "m", workers=2)
    for name in ("a.txt", "sub/b.bin", "empty"):
        assert mem.cat_file(f"/mout/{name}") == mem.cat_file(f"/msrc/{name}")


def test_incremental_uploads_little(tmp_path: Path) -> None:
    src = tmp_path / "src"
    total = make_tree(src, small=40, large_sizes=(96 << 20, 48 << 20, 32 << 20))
    repo = local_repo(tmp_path / "repo")
    _, first, w1 = backup_dir(repo, src)
    assert w1.bytes_uploaded > 0.95 * total  # random data: no compression gain, all uploaded once
    _, same, w2 = backup_dir(repo, src)
    assert w2.bytes_uploaded < 0.01 * total, (w2.bytes_uploaded, total)
    assert same.bytes_read == 0  # unchanged files are not even read
    changed = change_one_percent(src, total)
    sid, _, w3 = backup_dir(repo, src)
    assert changed >= 0.009 * total
    assert w3.bytes_uploaded < 0.03 * total, (w3.bytes_uploaded, total)
    restore_all(repo, sid, tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_rerun_after_crash_adopts_packs_without_duplicating(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, small=10, large_sizes=(20 << 20,))
    repo = local_repo(tmp_path / "repo")
    repo.config["pack_target_size"] = 4 << 20
    writer = PackWriter(repo)
    # a crashed run: packs written, index and manifest never written, plus one torn pack
    from tasks.backup_engine import Chunker, backup_files, scan_source
    files, _ = scan_source(fsspec.filesystem("file"), str(src), "x")
    backup_files(repo, writer, fsspec.filesystem("file"), files, "data", {}, Chunker(repo.config["chunker"]))
    assert writer._unindexed, "expected full packs written before the crash"
    (tmp_path / "repo" / "packs" / "ff").mkdir(exist_ok=True)
    (tmp_path / "repo" / "packs" / "ff" / ("ff" * 32)).write_bytes(b"torn pack")
    crashed_upload = writer.bytes_uploaded
    fresh = Repository(fsspec.filesystem("file"), str(tmp_path / "repo")).open()
    sid, _, w2 = backup_dir(fresh, src)
    assert w2.bytes_uploaded < 0.5 * crashed_upload  # adopted packs are not uploaded again
    report = verify_repository(fresh, read_fraction=1.0)
    assert report.ok, report.problems
    restore_all(fresh, sid, tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


def test_flipped_bit_found_with_chunk_and_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, small=5, large_sizes=(2 << 20,))
    (src / "copy.bin").write_bytes((src / "large" / "big-0.bin").read_bytes())  # same chunks, two files
    repo = local_repo(tmp_path / "repo")
    sid, _, _ = backup_dir(repo, src)
    repo.load_index()
    entry = next(f for f in repo.load_snapshot(sid).files if f.path == "data/large/big-0.bin")
    victim = entry.chunks[1]
    loc = repo.index[victim]
    pack = Path(repo.pack_path(loc.pack))
    data = bytearray(pack.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0x10
    pack.write_bytes(bytes(data))
    report = verify_repository(repo, read_fraction=1.0)
    assert not report.ok
    assert [b.chunk for b in report.bad_chunks] == [victim]
    assert sorted(f.split(":", 1)[1] for f in report.bad_chunks[0].files) == ["data/copy.bin", "data/large/big-0.bin"]
    with pytest.raises(CorruptObject, match=victim):
        restore_all(repo, sid, tmp_path / "out")
    assert not (tmp_path / "out" / "large" / "big-0.bin").exists()


def _manifest_with(path: str, type_: str = "file") -> Manifest:
    return Manifest(time=utcnow(), tool="t", sources=[SourceInfo(name="d", kind="storage", url="x")],
                    files=[FileEntry(path=path, type=type_, size=0, hash="0" * 64, chunks=[])])


@pytest.mark.parametrize("bad", ["../escape.txt", "d/../../escape.txt", "/etc/passwd", "d//x", "d/./x", "C:/x", "d\\..\\x"])
def test_unsafe_paths_refused_before_writing(tmp_path: Path, bad: str) -> None:
    repo = local_repo(tmp_path / "repo")
    sid = repo.save_snapshot(_manifest_with(bad))
    with pytest.raises(UnsafePath, match="manifest path"):
        restore_all(repo, sid, tmp_path / "out", source=None)
    assert not (tmp_path / "escape.txt").exists()
    assert not ((tmp_path / "out").exists() and any((tmp_path / "out").rglob("*")))


def test_link_entries_and_planted_symlinks_refused(tmp_path: Path) -> None:
    from tasks.backup_manifest import check_restorable
    with pytest.raises(UnsafePath, match="links are refused"):
        check_restorable(_manifest_with("d/link", type_="symlink"))
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("data")
    repo = local_repo(tmp_path / "repo")
    sid, _, _ = backup_dir(repo, src)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(UnsafePath, match="outside the target"):
        restore_all(repo, sid, dest)
    assert not any(outside.iterdir())


def test_source_symlinks_are_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "real.txt").write_text("x")
    (src / "link.txt").symlink_to(src / "real.txt")
    repo = local_repo(tmp_path / "repo")
    sid, stats, _ = backup_dir(repo, src)
    assert [f.path for f in repo.load_snapshot(sid).files] == ["data/real.txt"]
    assert stats.skipped == ["data/link.txt"]


def test_missing_snapshot_corrupt_manifest_and_missing_repo(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="config.json is missing"):
        Repository(fsspec.filesystem("file"), str(tmp_path / "nothing")).open()
    repo = local_repo(tmp_path / "repo")
    with pytest.raises(SnapshotNotFound, match="latest"):
        repo.resolve_snapshot("latest")
    with pytest.raises(SnapshotNotFound, match="deadbeef00"):
        repo.resolve_snapshot("deadbeef00")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    sid, _, _ = backup_dir(repo, src)
    path = tmp_path / "repo" / "snapshots" / f"{sid}.json.zst"
    doc = json.loads(zstandard.decompress(path.read_bytes()))
    doc["files"][0]["size"] = 999
    path.write_bytes(zstandard.compress(json.dumps(doc).encode()))
    with pytest.raises(CorruptObject, match=f"{sid}.json.zst: content hash does not match"):
        repo.resolve_snapshot(sid[:10])
    path.write_bytes(zstandard.compress(b"{not json"))
    with pytest.raises(CorruptObject, match=f"{sid}.json.zst is not valid JSON"):
        repo.load_snapshot(sid)
    path.write_bytes(b"garbage")
    with pytest.raises(CorruptObject, match=f"{sid}.json.zst is not valid zstd"):
        repo.load_snapshot(sid)


def test_prune_keeps_referenced_chunks_and_dry_run_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, small=10, large_sizes=(3 << 20,))
    repo = local_repo(tmp_path / "repo")
    old_sid, _, _ = backup_dir(repo, src)
    (src / "large" / "big-0.bin").write_bytes(os.urandom(3 << 20))  # old content now only in old snapshot
    new_sid, _, _ = backup_dir(repo, src)
    before = sorted(p.name for p in (tmp_path / "repo").rglob("*") if p.is_file())
    repo.load_index()
    plan, kept = plan_prune(repo, RetentionPolicy(keep_last=1))
    assert plan.forget == [old_sid] and list(kept) == [new_sid]
    assert before == sorted(p.name for p in (tmp_path / "repo").rglob("*") if p.is_file())  # dry run
    execute_prune(repo, plan, kept)
    fresh = Repository(fsspec.filesystem("file"), str(tmp_path / "repo")).open()
    assert fresh.snapshot_ids() == [new_sid]
    report = verify_repository(fresh, read_fraction=1.0)
    assert report.ok, report.problems
    restore_all(fresh, new_sid, tmp_path / "out")
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)
    assert sum(fresh.pack_sizes().values()) < sum(p.stat().st_size for p in (src).rglob("*") if p.is_file()) * 1.2


def test_prune_and_backup_locks_exclude_each_other(tmp_path: Path) -> None:
    repo = local_repo(tmp_path / "repo")
    backup_lock = repo.acquire_lock("backup")
    with pytest.raises(RepositoryLocked, match="running backup"):
        repo.acquire_lock("prune")
    second_backup = repo.acquire_lock("backup")  # backups share the repository
    backup_lock.release()
    second_backup.release()
    prune_lock = repo.acquire_lock("prune")
    with pytest.raises(RepositoryLocked, match="running prune"):
        repo.acquire_lock("backup")
    prune_lock.release()
    assert repo.list_dir("locks") == []  # refused attempts leave no lock behind
    # an expired lease does not block
    stale = repo.acquire_lock("backup")
    doc = json.loads(repo.fs.cat_file(stale.path))
    doc["expires_at"] = "2000-01-01T00:00:00+00:00"
    repo.fs.pipe_file(stale.path, json.dumps(doc).encode())
    repo.acquire_lock("prune").release()
    assert repo.remove_expired_locks() == 1
    stale.release()


def test_rolling_scrub_covers_every_pack_within_n_runs(tmp_path: Path) -> None:
    packs = [f"{i:016x}" + "0" * 48 for i in range(0, 10_000, 37)]
    seen: list[str] = []
    for run in range(5):
        seen += scrub_slice(packs, run, 5)
    assert sorted(seen) == sorted(packs)  # each pack exactly once in 5 runs
    src = tmp_path / "src"
    make_tree(src, small=20, large_sizes=(6 << 20,))
    repo = local_repo(tmp_path / "repo")
    repo.config["pack_target_size"] = 1 << 20
    backup_dir(repo, src)
    read = 0
    for _ in range(3):
        read += verify_repository(repo, scrub_runs=3).packs_read
    assert read == len(repo.pack_sizes()) > 3


def test_names_a_snapshot_cannot_restore_are_skipped_with_their_reason(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.bin").write_bytes(b"weights" * 1000)
    (src / "notes\\2024.txt").write_bytes(b"a legal POSIX name restore refuses")
    with open(os.path.join(os.fsencode(src), b"caf\xe9.txt"), "wb") as f:  # Latin-1, not UTF-8
        f.write(b"old system")
    repo = local_repo(tmp_path / "repo")
    sid, stats, _ = backup_dir(repo, src)
    assert sorted(stats.skipped) == [
        "data/caf\\xe9.txt (name is not valid UTF-8)",
        "data/notes\\2024.txt (name holds a backslash or NUL, which restore refuses)",
    ]
    restore_all(repo, sid, tmp_path / "out")  # the rest of the snapshot restores
    assert tree_bytes(tmp_path / "out") == {"model.bin": b"weights" * 1000}


def test_a_source_directory_that_does_not_exist_is_an_error_not_an_empty_snapshot(tmp_path):
    from tasks.backup_engine import scan_source
    from tasks.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="source file:///gone does not exist"):
        scan_source(fsspec.filesystem("file"), str(tmp_path / "gone"), "file:///gone")


@pytest.mark.parametrize(("given", "named"), [
    ({"sources": [], "session_stores": []}, "nothing to back up"),
    ({"sources": ["region-a", " "]}, r"sources\[1\]"),
    ({"session_stores": [""]}, r"session_stores\[0\]"),
])
def test_backup_parameters_with_nothing_to_back_up_are_refused(given, named):
    from pydantic import ValidationError

    from flows.backup import BackupParams

    with pytest.raises(ValidationError, match=named):
        BackupParams.model_validate(given)
