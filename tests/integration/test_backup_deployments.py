"""Backup deployments through the real worker, events on the server, prune on a real repository."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

from blocks import StorageTarget
from deployments.settings import PlatformSettings
from flows.backup import BackupParams, PruneParams, RepositoryRef, RestoreParams, VerifyParams, backup, prune, restore, verify_backup
from tasks.backup import repository_for
from tasks.backup_errors import RepositoryLocked
from tasks.backup_retention import RetentionPolicy
from tests.unit.backup_data import make_tree, tree_bytes
from tests.server_events import wait_for_events

pytestmark = pytest.mark.integration
BACKUP_FLOWS = ["backup/backup", "restore/restore", "prune/prune", "verify-backup/verify-backup", "restore-drill/restore-drill"]


def test_backup_deployments_and_weekly_drill_schedule(deployed: PlatformSettings) -> None:
    with get_client(sync_client=True) as client:
        for name in BACKUP_FLOWS:
            assert client.read_deployment_by_name(name).work_pool_name == deployed.work_pool
        drill = client.read_deployment_by_name("restore-drill/restore-drill")
        schedules = client.read_deployment_schedules(drill.id)
    assert [s.schedule.cron for s in schedules] == ["0 5 * * 1"]  # weekly, Mondays 05:00


def test_backup_deployment_runs_through_worker_and_emits_events(deployed: PlatformSettings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    make_tree(tmp_path, small=10, large_sizes=(1 << 20,))
    StorageTarget(url=f"file://{tmp_path}").save(f"bk-dep-{tag}", overwrite=True)
    started = time.time()
    params = {"repository": {"block": "region-b", "prefix": f"backup-test/{tag}/repo"}, "sources": [f"bk-dep-{tag}"],
              "session_stores": ["region-a"]}
    run = run_deployment("backup/backup", parameters={"params": params}, timeout=300, poll_interval=1, as_subflow=False)
    assert run.state is not None and run.state.is_completed(), run.state
    done = wait_for_events(deployed, event="llm-resilience.backup.completed", resource_id="llm-resilience.backup.backup", since=started)
    assert done and done[0]["payload"]["files"] == 12  # 11 files + the Redis export
    assert len(done[0]["payload"]["snapshot_id"]) == 64

    with pytest.raises(Exception, match="bk-no-such-block"):
        backup(BackupParams(repository=RepositoryRef(block="bk-no-such-block"), sources=[f"bk-dep-{tag}"], session_stores=[]))
    failed = wait_for_events(deployed, event="llm-resilience.backup.failed", resource_id="llm-resilience.backup.backup", since=started)
    assert failed and "bk-no-such-block" in failed[0]["payload"]["error"]


def test_prune_keeps_what_kept_snapshots_need_and_refuses_during_backup(platform: PlatformSettings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    src = tmp_path / "src"
    make_tree(src, small=10, large_sizes=(2 << 20,))
    StorageTarget(url=f"file://{src}").save(f"bk-prune-{tag}", overwrite=True)
    ref = RepositoryRef(block="region-b", prefix=f"backup-test/{tag}/repo")
    ids = []
    for round_ in range(3):
        (src / "large" / "big-0.bin").write_bytes(round_.to_bytes(1, "big") * (2 << 20))
        ids.append(backup(BackupParams(repository=ref, sources=[f"bk-prune-{tag}"], session_stores=[])).snapshot_id)
    policy = RetentionPolicy(keep_last=1)
    dry = prune(PruneParams(repository=ref, policy=policy, dry_run=True))
    assert dry.dry_run and sorted(dry.forgotten) == sorted(ids[:2]) and dry.packs_deleted + dry.packs_repacked
    repo = repository_for(StorageTarget.load("region-b"), ref.prefix).open()
    assert sorted(repo.snapshot_ids()) == sorted(ids)  # the dry run removed nothing

    lock = repo.acquire_lock("backup", "a backup in another process")
    try:
        with pytest.raises(RepositoryLocked, match="running backup"):
            prune(PruneParams(repository=ref, policy=policy))
    finally:
        lock.release()
    assert sorted(repo.snapshot_ids()) == sorted(ids)

    done = prune(PruneParams(repository=ref, policy=policy))
    assert sorted(done.forgotten) == sorted(ids[:2]) and done.bytes_freed > 0
    assert repo.snapshot_ids() == [ids[2]]
    assert verify_backup(VerifyParams(repository=ref, read_fraction=1.0, scrub_runs=0)).ok
    out = tmp_path / "out"
    StorageTarget(url=f"file://{out}").save(f"bk-prune-out-{tag}", overwrite=True)
    restore(RestoreParams(repository=ref, target=f"bk-prune-out-{tag}", source=f"bk-prune-{tag}"))
    assert tree_bytes(out) == tree_bytes(src)
