"""Backup flows on the real platform: moto S3 in both regions, Redis, a directory, the Prefect server."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from blocks import SessionStore, StorageTarget
from deployments.settings import PlatformSettings
from flows.backup import (
    BackupParams,
    BackupVerificationFailed,
    DrillParams,
    RepositoryRef,
    RestoreParams,
    VerifyParams,
    backup,
    restore,
    restore_drill,
    verify_backup,
)
from tasks.backup_errors import DrillThresholdExceeded, RepositoryError, RepositoryUnreachable, SnapshotNotFound
from tasks.errors import ConfigurationError
from tests.unit.backup_data import make_tree, tree_bytes

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def s3_block(name: str, base: str, prefix: str) -> StorageTarget:
    """A StorageTarget like the platform's `base` block, rooted at `prefix` inside its bucket."""
    target = StorageTarget.load(base)
    block = target.model_copy(update={"url": f"{target.url.rstrip('/')}/{prefix}"})
    block.save(name, overwrite=True)
    return block


def dir_block(name: str, path: Path) -> StorageTarget:
    block = StorageTarget(url=f"file://{path}")
    block.save(name, overwrite=True)
    return block


def s3_tree(target: StorageTarget) -> dict[str, bytes]:
    fs = target.filesystem()
    root = target.root
    return {p[len(root) + 1:]: fs.cat_file(p) for p in sorted(fs.find(root))}


def repo_ref(prefix: str) -> RepositoryRef:
    return RepositoryRef(block="region-b", prefix=prefix)


def test_s3_source_backup_wipe_restore_is_identical(platform: PlatformSettings) -> None:
    tag = uuid.uuid4().hex[:8]
    src = s3_block(f"bk-src-{tag}", "region-a", f"backup-test/{tag}/src")
    fs = src.filesystem()
    rng = random.Random(3)
    objects = {f"prompts/p{i}.json": rng.randbytes(rng.randint(0, 20_000)) for i in range(40)}
    objects["models/weights.bin"] = rng.randbytes(3 << 20)
    objects["models/copy.bin"] = objects["models/weights.bin"]  # deduplicated
    fs.pipe({f"{src.root}/{k}": v for k, v in objects.items()})
    ref = repo_ref(f"backup-test/{tag}/repo")
    result = backup(BackupParams(repository=ref, sources=[f"bk-src-{tag}"], session_stores=[]))
    assert result.files == len(objects)
    assert result.bytes_uploaded < sum(map(len, objects.values())) - (3 << 20) + (1 << 20)  # the copy was not stored twice

    # an unchanged re-run uploads almost nothing and reads nothing
    again = backup(BackupParams(repository=ref, sources=[f"bk-src-{tag}"], session_stores=[]))
    assert again.parent == result.snapshot_id
    assert again.bytes_read == 0 and again.bytes_uploaded == 0

    fs.rm(src.root, recursive=True)
    assert not fs.exists(f"{src.root}/models/weights.bin")
    restored = restore(RestoreParams(repository=ref, snapshot="latest", target=f"bk-src-{tag}", source=f"bk-src-{tag}"))
    assert restored.files == len(objects)
    assert s3_tree(src) == objects

    async def artifacts() -> set[str]:
        async with get_client() as client:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["backup-report", "backup-summary", "backup-progress", "restore-report"])))
            return {a.key for a in found}

    import asyncio
    assert asyncio.run(artifacts()) >= {"backup-report", "backup-summary", "backup-progress", "restore-report"}


def test_directory_source_restore_verify_drill_and_bit_flip(platform: PlatformSettings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    src_dir = tmp_path / "src"
    make_tree(src_dir, small=30, large_sizes=(2 << 20,))
    expected = tree_bytes(src_dir)
    dir_block(f"bk-dir-{tag}", src_dir)
    ref = repo_ref(f"backup-test/{tag}/repo")
    result = backup(BackupParams(repository=ref, sources=[f"bk-dir-{tag}"], session_stores=[]))
    import shutil
    shutil.rmtree(src_dir)
    out = tmp_path / "out"
    dir_block(f"bk-out-{tag}", out)
    restore(RestoreParams(repository=ref, snapshot=result.snapshot_id[:12], target=f"bk-out-{tag}", source=f"bk-dir-{tag}"))
    assert tree_bytes(out) == expected

    ok = verify_backup(VerifyParams(repository=ref, read_fraction=1.0, scrub_runs=3))
    assert ok.ok and ok.chunks_read > 0

    drill = restore_drill(DrillParams(repository=ref))
    assert drill.passed and drill.files == len(expected) and drill.rto_s > 0 and drill.rpo_s >= 0
    assert not drill.sampled and drill.rto_estimated_s == drill.rto_s  # the tree fits the default sample: all of it
    sample = restore_drill(DrillParams(repository=ref, sample_mib=0.25))  # the 2 MiB file does not fit
    assert sample.passed and sample.sampled and 1 <= sample.files < sample.snapshot_files == len(expected)
    assert sample.bytes <= 0.25 * 2**20 < sample.snapshot_bytes == sum(len(v) for v in expected.values())
    assert sample.rto_estimated_s > sample.rto_s > 0
    with pytest.raises(DrillThresholdExceeded, match="estimated from a sample"):
        restore_drill(DrillParams(repository=ref, sample_mib=0.25, max_rto_s=0.001))
    with pytest.raises(DrillThresholdExceeded, match="RPO"):
        restore_drill(DrillParams(repository=ref, max_rpo_s=0.001))

    # flip one bit in one stored chunk in S3: verify names the chunk and every file that holds it
    repo_target = StorageTarget.load("region-b")
    from tasks.backup import repository_for
    repo = repository_for(repo_target, ref.prefix).open()
    repo.load_index()
    manifest = repo.load_snapshot(result.snapshot_id)
    big = next(f for f in manifest.files if f.path.endswith("big-0.bin"))
    victim = big.chunks[0]
    loc = repo.index[victim]
    fs = repo_target.filesystem()
    data = bytearray(fs.cat_file(repo.pack_path(loc.pack)))
    data[loc.offset + 7] ^= 0x01
    fs.pipe_file(repo.pack_path(loc.pack), bytes(data))
    with pytest.raises(BackupVerificationFailed, match=victim) as failed:
        verify_backup(VerifyParams(repository=ref, read_fraction=1.0, scrub_runs=0))
    bad = failed.value.result.bad_chunks
    assert [b.chunk for b in bad] == [victim]
    assert [f.split(":", 1)[1] for f in bad[0].files] == [big.path]


def test_backup_killed_mid_run_then_rerun_verifies_and_restores(platform: PlatformSettings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    src_dir = tmp_path / "src"
    make_tree(src_dir, small=200, large_sizes=(64 << 20, 48 << 20, 48 << 20))  # several packs: seconds of uploads
    expected = tree_bytes(src_dir)
    dir_block(f"bk-crash-{tag}", src_dir)
    prefix = f"backup-test/{tag}/repo"
    code = textwrap.dedent(f"""
        from flows.backup import backup, BackupParams, RepositoryRef
        backup(BackupParams(repository=RepositoryRef(block="region-b", prefix={prefix!r}),
                            sources=["bk-crash-{tag}"], session_stores=[], workers=2))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    repo_fs = StorageTarget.load("region-b").filesystem()
    packs_dir = f"{StorageTarget.load('region-b').root}/{prefix}/packs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if repo_fs.find(packs_dir):
                break
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.3))  # a random point after the first pack, long before the last
    assert proc.poll() is None, "the backup finished before it could be killed; make the data set larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    repo_fs.invalidate_cache()
    assert not repo_fs.exists(f"{StorageTarget.load('region-b').root}/{prefix}/snapshots"), "no manifest may exist yet"

    ref = repo_ref(prefix)
    result = backup(BackupParams(repository=ref, sources=[f"bk-crash-{tag}"], session_stores=[]))
    total = sum(map(len, expected.values()))
    stored = sum(int(i["size"]) for i in repo_fs.find(packs_dir, detail=True).values())
    assert stored < total * 1.02, (stored, total)  # nothing uploaded twice (random data does not compress)
    assert verify_backup(VerifyParams(repository=ref, read_fraction=1.0, scrub_runs=0)).ok
    out = tmp_path / "out"
    dir_block(f"bk-crash-out-{tag}", out)
    restore(RestoreParams(repository=ref, snapshot=result.snapshot_id, target=f"bk-crash-out-{tag}", source=f"bk-crash-{tag}"))
    assert tree_bytes(out) == expected


def value_of(client, key: bytes) -> object:  # noqa: ANN001
    kind = client.type(key)
    readers = {b"string": client.get, b"hash": client.hgetall, b"list": lambda k: client.lrange(k, 0, -1),
               b"set": client.smembers, b"zset": lambda k: client.zrange(k, 0, -1, withscores=True)}
    return kind, readers[kind](key)


def test_redis_export_and_reload_keeps_every_key(platform: PlatformSettings, tmp_path: Path) -> None:
    from deployments.stack.launcher import Launcher
    from tests.ports import settings_on_free_ports

    tag = uuid.uuid4().hex[:8]
    source = SessionStore.load("region-a").client()
    source.set(f"bk:{tag}:plain", "hello")
    source.set(f"bk:{tag}:ttl", "soon", px=600_000)
    source.hset(f"bk:{tag}:session", mapping={"user": "u1", "turns": "3"})
    source.expire(f"bk:{tag}:session", 3600)
    source.rpush(f"bk:{tag}:history", "q1", "a1", "q2", "a2")
    source.expire(f"bk:{tag}:history", 7200)
    source.sadd(f"bk:{tag}:set", "x", "y")
    source.zadd(f"bk:{tag}:zset", {"a": 1.5, "b": 2})
    source.set(f"bk:{tag}:binary", b"\x00\xff\x10")
    ref = repo_ref(f"backup-test/{tag}/repo")
    result = backup(BackupParams(repository=ref, sources=[], session_stores=["region-a"]))
    source_keys = {k for k in source.keys("*")}

    extra = settings_on_free_ports(tmp_path / "extra-redis")
    launcher = Launcher(extra)
    try:
        launcher.up(only=["redis-region-a"])
        SessionStore(url=f"redis://127.0.0.1:{extra.region_a.redis_port}/0").save(f"bk-reload-{tag}", overwrite=True)
        restored = restore(RestoreParams(repository=ref, snapshot=result.snapshot_id, redis_targets={"sessions-region-a": f"bk-reload-{tag}"}))
        target = SessionStore.load(f"bk-reload-{tag}").client()
        assert set(target.keys("*")) == source_keys
        assert restored.redis_keys_loaded["sessions-region-a"] == len(source_keys)
        raw_src = SessionStore.load("region-a")
        from tasks.backup import raw_redis
        with raw_redis(raw_src) as a, raw_redis(SessionStore.load(f"bk-reload-{tag}")) as b:
            for key in source_keys:
                assert a.type(key) == b.type(key), key
                assert value_of(a, key) == value_of(b, key), key
                ttl_a, ttl_b = a.pttl(key), b.pttl(key)
                assert (ttl_a < 0) == (ttl_b < 0), key
                if ttl_a > 0:
                    assert abs(ttl_a - ttl_b) < 30_000, (key, ttl_a, ttl_b)
        assert target.lrange(f"bk:{tag}:history", 0, -1) == ["q1", "a1", "q2", "a2"]
        assert target.hgetall(f"bk:{tag}:session") == {"user": "u1", "turns": "3"}
        assert 0 < target.pttl(f"bk:{tag}:ttl") <= 600_000
    finally:
        launcher.down(only=["redis-region-a"])
    assert not launcher.is_running("redis-region-a")


def test_bad_input_names_the_object(platform: PlatformSettings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    ref = repo_ref(f"backup-test/{tag}/repo")
    with pytest.raises(RepositoryError, match=f"no backup repository at .*backup-test/{tag}/repo"):
        restore(RestoreParams(repository=ref, snapshot="latest", target=None))
    dir_block(f"bk-small-{tag}", tmp_path)
    (tmp_path / "a.txt").write_text("a")
    backup(BackupParams(repository=ref, sources=[f"bk-small-{tag}"], session_stores=[]))
    with pytest.raises(SnapshotNotFound, match="snapshot 'abcdef123456' does not exist"):
        restore(RestoreParams(repository=ref, snapshot="abcdef123456", target=None))

    from tests.ports import free_ports
    base = StorageTarget.load("region-b")
    base.model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_ports(1)[0]}",
                            "client_options": {"config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}}}).save(f"bk-down-{tag}", overwrite=True)
    with pytest.raises(RepositoryUnreachable, match="cannot reach the store"):
        backup(BackupParams(repository=RepositoryRef(block=f"bk-down-{tag}", prefix="x"), sources=[f"bk-small-{tag}"], session_stores=[]))

    base.model_copy(update={"access_key_id": None, "secret_access_key": None}).save(f"bk-nocreds-{tag}", overwrite=True)
    env = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AWS_")}
    try:
        with pytest.raises(ConfigurationError, match="credentials"):
            backup(BackupParams(repository=RepositoryRef(block=f"bk-nocreds-{tag}", prefix="x"), sources=[f"bk-small-{tag}"], session_stores=[]))
    finally:
        os.environ.update(env)
    with pytest.raises(ConfigurationError, match="bk-missing-block"):
        backup(BackupParams(repository=RepositoryRef(block="bk-missing-block", prefix="x"), sources=[f"bk-small-{tag}"], session_stores=[]))
