"""verify-checkpoint against the real platform: S3 in both regions (moto over HTTP), a local directory,
the manifest, replica comparison, artifacts and events on the session's Prefect server."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from blocks import StorageTarget
from deployments.settings import PlatformSettings
from flows.checkpoint_verification import (
    REPORT_ARTIFACT_KEY,
    TABLE_ARTIFACT_KEY,
    CheckpointLocation,
    CheckpointVerificationFailed,
    ManifestMode,
    VerifyOptions,
    report_of,
    verify_checkpoint,
)
from tasks.checkpoint_findings import FindingKind as K
from tests import checkpoint_corpus as corpus
from tests.server_events import server_copy, wait_for_events

pytestmark = pytest.mark.integration


def _upload(target: StorageTarget, prefix: str, local: Path) -> None:
    fs = target.filesystem()
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe_file(target.path(prefix, str(path.relative_to(local))), path.read_bytes())


@pytest.fixture()
def checkpoint_dir(tmp_path: Path) -> Path:
    """A sharded checkpoint plus a single-file one and a clean torch-style pickle beside it."""
    root = tmp_path / "ckpt"
    corpus.write_sharded(root / "llama-tiny")
    corpus.write_single(root / "adapter")
    corpus.torch_zip(root / "adapter" / "optimizer.pt", corpus.torch_state_dict_pickle())
    (root / "llama-tiny" / "config.json").write_text('{"model_type": "llama"}')
    return root


def test_s3_checkpoint_verifies_writes_manifest_then_catches_a_flipped_bit(platform: PlatformSettings, checkpoint_dir: Path) -> None:
    started = time.time()
    region_a = StorageTarget.load("region-a")
    prefix = f"checkpoints/{uuid.uuid4().hex[:8]}"
    _upload(region_a, prefix, checkpoint_dir)

    state = verify_checkpoint(CheckpointLocation(storage="region-a", prefix=prefix), return_state=True)
    report = report_of(state)
    assert state.is_completed(), report.markdown()
    assert report.findings == [] and report.manifest_action.startswith("written")
    assert {c.checkpoint: c.verdict.value for c in report.checkpoints} == {"llama-tiny": "ok", "adapter": "ok"}
    assert region_a.filesystem().exists(region_a.path(prefix, "checkpoint-manifest.json"))

    # One flipped bit in one tensor of one shard, uploaded over the original.
    shard = checkpoint_dir / "llama-tiny" / "model-00002-of-00003.safetensors"
    header, _ = corpus.header_of(shard)
    name = sorted(k for k in header if k != "__metadata__")[0]
    n = int.from_bytes(shard.read_bytes()[:8], "little")
    corpus.flip_bit(shard, 8 + n + header[name]["data_offsets"][0] + 1, bit=5)
    _upload(region_a, prefix, checkpoint_dir)

    state = verify_checkpoint(CheckpointLocation(storage="region-a", prefix=prefix), return_state=True)
    assert state.is_failed()
    report = report_of(state)
    assert report.manifest_action == "checked"
    assert [(f.kind, f.file, f.tensor) for f in report.findings] == [
        (K.manifest_tensor_differs, "llama-tiny/model-00002-of-00003.safetensors", name)
    ]
    with pytest.raises(CheckpointVerificationFailed) as raised:
        verify_checkpoint(CheckpointLocation(storage="region-a", prefix=prefix))
    assert raised.value.report.findings[0].tensor == name

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_latest_artifacts(limit=100)}
    assert "manifest_tensor_differs" in str(artifacts[REPORT_ARTIFACT_KEY].data)
    assert name in str(artifacts[TABLE_ARTIFACT_KEY].data)
    resource = f"llm-resilience.checkpoint.{region_a.url.rstrip('/')}/{prefix}/llama-tiny"
    assert wait_for_events(platform, event="llm-resilience.checkpoint.verified", resource_id=resource, since=started)
    corrupt = wait_for_events(platform, event="llm-resilience.checkpoint.corrupt", resource_id=resource, since=started)
    assert corrupt and "manifest_tensor_differs" in corrupt[0]["payload"]["finding_kinds"]


def test_compare_replicas_names_the_tampered_copy_in_region_b(platform: PlatformSettings, checkpoint_dir: Path) -> None:
    region_a, region_b = StorageTarget.load("region-a"), StorageTarget.load("region-b")
    prefix = f"replicated/{uuid.uuid4().hex[:8]}"
    _upload(region_a, prefix, checkpoint_dir)
    _upload(region_b, prefix, checkpoint_dir)
    options = VerifyOptions(manifest=ManifestMode.off, compare_replica="region-b")

    state = verify_checkpoint(CheckpointLocation(storage="region-a", prefix=prefix), options, return_state=True)
    assert state.is_completed(), report_of(state).markdown()

    # Tamper with region-b: one tensor changed (same size), the config gone, a stray file added.
    fs_b = region_b.filesystem()
    path = region_b.path(prefix, "adapter/model.safetensors")
    raw = bytearray(fs_b.cat_file(path))
    header, _ = corpus.header_of(checkpoint_dir / "adapter" / "model.safetensors")
    n = int.from_bytes(raw[:8], "little")
    start = 8 + n + header["layers.3.weight"]["data_offsets"][0]
    raw[start] ^= 0xFF
    fs_b.pipe_file(path, bytes(raw))
    fs_b.rm_file(region_b.path(prefix, "llama-tiny/config.json"))
    fs_b.pipe_file(region_b.path(prefix, "adapter/notes.txt"), b"not in region-a")

    state = verify_checkpoint(CheckpointLocation(storage="region-a", prefix=prefix), options, return_state=True)
    assert state.is_failed()
    got = {(f.kind, f.file, f.tensor) for f in report_of(state).findings}
    assert got == {
        (K.replica_tensor_differs, "region-b:adapter/model.safetensors", "layers.3.weight"),
        (K.replica_file_missing, "region-b:llama-tiny/config.json", None),
        (K.replica_file_extra, "region-b:adapter/notes.txt", None),
    }


def test_local_directory_with_file_url(platform: PlatformSettings, checkpoint_dir: Path) -> None:
    target = StorageTarget(url=checkpoint_dir.as_uri())
    evil = checkpoint_dir / "evil"
    evil.mkdir()
    (evil / "pytorch_model.bin").write_bytes(corpus.malicious_pickle("subprocess", "Popen"))
    corpus.write_single(checkpoint_dir / "broken")
    corpus.truncate(checkpoint_dir / "broken" / "model.safetensors", 5)

    state = verify_checkpoint(CheckpointLocation(prefix=""), VerifyOptions(tensor_stats=True), target=target, return_state=True)
    assert state.is_failed()
    report = report_of(state)
    verdicts = {c.checkpoint: c.verdict.value for c in report.checkpoints}
    assert verdicts == {"llama-tiny": "ok", "adapter": "ok", "evil": "dangerous", "broken": "corrupt"}
    assert {(f.kind, f.file) for f in report.findings} == {
        (K.pickle_dangerous_global, "evil/pytorch_model.bin"),
        (K.missing_bytes, "broken/model.safetensors"),
    }
    assert "subprocess.Popen" in next(f.detail for f in report.findings if f.kind is K.pickle_dangerous_global)
    assert report.manifest_action.startswith("not written")
    # A final state the server answers late is proposed again, and the client is handed the
    # server's copy of it: that copy must carry the report too.
    assert report_of(server_copy(state)) == report


def test_bad_locations_are_specific_findings(platform: PlatformSettings, tmp_path: Path) -> None:
    state = verify_checkpoint(CheckpointLocation(storage="region-a", prefix=f"nothing-here/{uuid.uuid4().hex}"), return_state=True)
    assert state.is_failed()
    assert [f.kind for f in report_of(state).findings] == [K.empty_prefix]

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "README.md").write_text("no weights here")
    state = verify_checkpoint(CheckpointLocation(), target=StorageTarget(url=docs.as_uri()), return_state=True)
    assert [f.kind for f in report_of(state).findings] == [K.no_checkpoint_found]


def test_deployment_runs_through_the_worker(deployed: PlatformSettings, checkpoint_dir: Path) -> None:
    from prefect.deployments import run_deployment

    region_a, region_b = StorageTarget.load("region-a"), StorageTarget.load("region-b")
    prefix = f"deployed/{uuid.uuid4().hex[:8]}"
    _upload(region_a, prefix, checkpoint_dir)
    _upload(region_b, prefix, checkpoint_dir)
    run = run_deployment(
        "verify-checkpoint/verify-checkpoint",
        parameters={"location": {"storage": "region-a", "prefix": prefix}, "options": {"compare_replica": "region-b"}},
        timeout=300, poll_interval=1, as_subflow=False,
    )
    assert run.state is not None and run.state.is_completed(), run.state
    assert region_a.filesystem().exists(region_a.path(prefix, "checkpoint-manifest.json"))


def test_invalid_manifest_is_a_finding_and_never_overwritten(platform: PlatformSettings, checkpoint_dir: Path) -> None:
    manifest = checkpoint_dir / "checkpoint-manifest.json"
    manifest.write_text("{not a manifest")
    target = StorageTarget(url=checkpoint_dir.as_uri())
    state = verify_checkpoint(CheckpointLocation(), target=target, return_state=True)
    assert state.is_failed()
    report = report_of(state)
    assert [f.kind for f in report.findings] == [K.manifest_invalid]
    assert report.manifest_action == "invalid (left untouched)"
    assert manifest.read_text() == "{not a manifest"

    manifest.unlink()
    state = verify_checkpoint(CheckpointLocation(), VerifyOptions(manifest=ManifestMode.check), target=target, return_state=True)
    assert [f.kind for f in report_of(state).findings] == [K.manifest_invalid]
    assert not manifest.exists()


def test_manifest_write_never_replaces_a_file_that_is_not_a_manifest(platform: PlatformSettings, checkpoint_dir: Path) -> None:
    """manifest=write with manifest_path naming a real file of the checkpoint (a slip of the UI form):
    that file is left as it was and reported, not replaced by manifest JSON."""
    config = checkpoint_dir / "llama-tiny" / "config.json"
    before = config.read_bytes()
    target = StorageTarget(url=checkpoint_dir.as_uri())
    options = VerifyOptions(manifest=ManifestMode.write, manifest_path="llama-tiny/config.json")
    state = verify_checkpoint(CheckpointLocation(), options, target=target, return_state=True)
    report = report_of(state)
    assert config.read_bytes() == before
    assert report.manifest_action == "invalid (left untouched)"
    assert [(f.kind, f.file) for f in report.findings] == [(K.manifest_invalid, "llama-tiny/config.json")]

    written = verify_checkpoint(CheckpointLocation(), VerifyOptions(manifest=ManifestMode.write), target=target)
    assert written.manifest_action.startswith("written to")  # a manifest path that holds a manifest (or nothing) is written
