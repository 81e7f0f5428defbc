"""The replication, backup, restore and checkpoint flows on prefect-dask's DaskTaskRunner (a LocalCluster of
worker processes) give exactly what the default runner gives, and their batches really ran on Dask."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocks import StorageTarget
from deployments.settings import PlatformSettings
from flows.backup import BackupParams, RepositoryRef, RestoreParams, backup, restore
from flows.checkpoint_verification import CheckpointLocation, ManifestMode, VerifyOptions, report_of, verify_checkpoint
from flows.replication import ReplicationParams, replicate
from tasks.errors import ConfigurationError
from tasks.task_runners import TaskRunnerSettings
from tests import checkpoint_corpus as corpus
from tests.ports import free_ports
from tests.replication_helpers import region_client

pytestmark = pytest.mark.integration
DEFAULT = TaskRunnerSettings()


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[tuple[str, object]]:
    """A LocalCluster of two worker processes, reached by address like a team's existing cluster."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield cluster.scheduler_address, client


def _ran_on_dask(client) -> int:  # noqa: ANN001 - a distributed.Client
    """How many tasks the cluster's workers have executed (prefect-dask submits one per task run)."""
    return sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())


def _listing(client, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:  # noqa: ANN001
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) + 1:]] = (o["Size"], o["ETag"])
    return out


def test_replication_on_dask_copies_exactly_what_the_default_runner_copies(platform: PlatformSettings, dask_cluster) -> None:  # noqa: ANN001
    address, client = dask_cluster
    rng = random.Random(9)
    objects = {f"shard-{i:03d}/part.bin": rng.randbytes(rng.randint(0, 40_000)) for i in range(60)}
    a, b = region_client(platform, platform.region_a), region_client(platform, platform.region_b)
    tag = uuid.uuid4().hex[:8]
    results = {}
    before = _ran_on_dask(client)
    for name, runner in (("default", DEFAULT), ("dask", TaskRunnerSettings(kind="dask", dask_address=address))):
        prefix = f"dask-test/{tag}/{name}"
        for key, data in objects.items():
            a.put_object(Bucket=platform.region_a.bucket, Key=f"{prefix}/{key}", Body=data)
        report = replicate(ReplicationParams(prefix=prefix, batch_objects=7, task_runner=runner))
        d = report.destinations[0]
        results[name] = ((d.copied_objects, d.copied_bytes, d.failed_objects, d.skipped_objects),
                         _listing(b, platform.region_b.bucket, prefix))
    assert results["dask"] == results["default"]
    assert results["dask"][0] == (60, sum(map(len, objects.values())), 0, 0)
    assert set(results["dask"][1]) == set(objects)
    assert _ran_on_dask(client) - before == 9  # ceil(60 / 7) batches, each a Dask task


def _snapshot_files(ref: RepositoryRef, snapshot_id: str) -> list[tuple[str, int, str, list[str]]]:
    from tasks.backup import open_repository

    repo = open_repository.fn(ref.block, ref.prefix, create=False)
    manifest = repo.load_snapshot(snapshot_id)
    return [(e.path, e.size, e.hash, list(e.chunks)) for e in manifest.files]


def test_backup_on_dask_makes_the_same_snapshot_and_restores_the_same_files(platform: PlatformSettings, dask_cluster,  # noqa: ANN001
                                                                            tmp_path: Path) -> None:
    """Two repositories, one backed up batch by batch in the flow, one with the batches on Dask:
    the snapshots list the same files with the same chunks, and both restore the source exactly."""
    address, client = dask_cluster
    tag = uuid.uuid4().hex[:8]
    src = tmp_path / "src"
    rng = random.Random(11)
    shared = rng.randbytes(200_000)  # the same bytes in several files, in different batches
    files = {f"d{i % 3}/f{i:02d}.bin": rng.randbytes(rng.randint(0, 50_000)) for i in range(24)}
    files.update({f"copies/c{i}.bin": shared for i in range(4)})
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    StorageTarget(url=f"file://{src}").save(f"dask-bsrc-{tag}", overwrite=True)
    snapshots, results = {}, {}
    before = _ran_on_dask(client)
    for name, runner in (("default", DEFAULT), ("dask", TaskRunnerSettings(kind="dask", dask_address=address))):
        ref = RepositoryRef(block="region-b", prefix=f"dask-test/{tag}/repo-{name}")
        result = backup(BackupParams(repository=ref, sources=[f"dask-bsrc-{tag}"], session_stores=[], batch_files=5,
                                     task_runner=runner))
        results[name] = result
        snapshots[name] = _snapshot_files(ref, result.snapshot_id)
        out = tmp_path / f"restored-{name}"
        out.mkdir()
        StorageTarget(url=f"file://{out}").save(f"dask-bout-{tag}-{name}", overwrite=True)
        restore(RestoreParams(repository=ref, snapshot=result.snapshot_id, target=f"dask-bout-{tag}-{name}",
                              source=f"dask-bsrc-{tag}"))
        assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files, name
    assert snapshots["dask"] == snapshots["default"] and len(snapshots["dask"]) == len(files)
    for figure in ("files", "bytes_total", "bytes_read"):
        assert getattr(results["dask"], figure) == getattr(results["default"], figure), figure
    # Concurrent batches may store a chunk they share twice; never fewer chunks. (Uploaded bytes
    # also count pack trailers, which depend on how chunks were grouped into packs.)
    assert results["dask"].chunks_new >= results["default"].chunks_new > 0
    assert _ran_on_dask(client) - before == 6  # ceil(28 / 5) backup batches, each a Dask task


def test_restore_on_dask_writes_the_same_verified_files(platform: PlatformSettings, dask_cluster, tmp_path: Path) -> None:  # noqa: ANN001
    address, client = dask_cluster
    tag = uuid.uuid4().hex[:8]
    src = tmp_path / "src"
    rng = random.Random(5)
    files = {f"d{i % 4}/f{i}.bin": rng.randbytes(rng.randint(0, 30_000)) for i in range(30)}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    StorageTarget(url=f"file://{src}").save(f"dask-src-{tag}", overwrite=True)
    ref = RepositoryRef(block="region-b", prefix=f"dask-test/{tag}/repo")
    snap = backup(BackupParams(repository=ref, sources=[f"dask-src-{tag}"], session_stores=[])).snapshot_id
    trees, figures = {}, {}
    before = _ran_on_dask(client)
    for name, runner in (("default", DEFAULT), ("dask", TaskRunnerSettings(kind="dask", dask_address=address))):
        out = tmp_path / f"out-{name}"
        out.mkdir()
        StorageTarget(url=f"file://{out}").save(f"dask-out-{tag}-{name}", overwrite=True)
        result = restore(RestoreParams(repository=ref, snapshot=snap, target=f"dask-out-{tag}-{name}",
                                       source=f"dask-src-{tag}", task_runner=runner))
        figures[name] = (result.files, result.bytes_written)
        trees[name] = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert figures["dask"] == figures["default"] == (30, sum(map(len, files.values())))
    assert trees["dask"] == trees["default"] == files
    assert _ran_on_dask(client) - before == 1


def test_checkpoint_verification_on_a_local_dask_cluster_gives_the_same_report(platform: PlatformSettings, tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    corpus.write_sharded(root / "llama-tiny")
    corpus.write_single(root / "adapter")
    corpus.flip_bit(root / "adapter" / "model.safetensors", 3)  # a corrupt header: the verdict must match too
    target = StorageTarget(url=f"file://{root}")
    reports = {}
    for name, runner in (("default", DEFAULT), ("dask", TaskRunnerSettings(kind="dask", dask_workers=2))):
        state = verify_checkpoint(CheckpointLocation(prefix=""), VerifyOptions(manifest=ManifestMode.off, batch_size=2,
                                  task_runner=runner), target=target, return_state=True)
        report = report_of(state)
        reports[name] = (state.type, report.verdict, sorted((f.path, f.digest, f.verdict) for f in report.files),
                         sorted(x.model_dump_json() for x in report.findings))
    assert reports["dask"] == reports["default"]
    assert reports["dask"][0].value == "FAILED" and len(reports["dask"][2]) == 5


@pytest.mark.parametrize("flow_name", ["replicate", "backup"])
def test_unreachable_dask_scheduler_fails_at_flow_start_naming_the_setting(platform: PlatformSettings, flow_name: str) -> None:
    dead = free_ports(1)[0]
    runner = TaskRunnerSettings(kind="dask", dask_address=f"tcp://127.0.0.1:{dead}")
    prefix = f"dask-test/{uuid.uuid4().hex[:8]}/never"
    if flow_name == "replicate":
        state = replicate(ReplicationParams(prefix=prefix, task_runner=runner), return_state=True)
    else:
        state = backup(BackupParams(repository=RepositoryRef(block="region-b", prefix=prefix), sources=["region-a"],
                                    session_stores=[], task_runner=runner), return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigurationError) as err:
        state.result()
    assert "task_runner.dask_address" in str(err.value) and f"127.0.0.1:{dead}" in str(err.value)
    b = region_client(platform, platform.region_b)
    assert b.list_objects_v2(Bucket=platform.region_b.bucket, Prefix=prefix).get("KeyCount") == 0, "work began anyway"
