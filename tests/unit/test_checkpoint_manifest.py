"""Hashes, the integrity manifest, replica comparison and tensor statistics (no server)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import blake3
import fsspec
import numpy as np
import pytest
from safetensors.numpy import save_file

from tasks.checkpoint_findings import FindingKind as K
from tasks.checkpoint_findings import finding
from tasks.checkpoint_manifest import HashAlgorithm, IntegrityManifest, compare_manifests, parse_manifest
from tasks.checkpoint_report import Verdict, build_report, checkpoint_dirs, finding_checkpoint
from tasks.checkpoint_verifier import VerifySettings, build_manifest, cross_check_indexes, list_checkpoint_files, verify_files
from tests import checkpoint_corpus as corpus


def run(directory: Path, **settings):
    fs = fsspec.filesystem("file")
    files = list_checkpoint_files(fs, str(directory))
    return verify_files(fs, str(directory), files, VerifySettings(**settings))


def manifest_of(directory: Path, algorithm=HashAlgorithm.blake3) -> IntegrityManifest:
    return build_manifest(run(directory, hash_algorithm=algorithm), algorithm)


@pytest.mark.parametrize("algorithm", list(HashAlgorithm))
def test_whole_file_digest_matches_the_standard_tools(tmp_path, algorithm):
    gguf = corpus.write_gguf(tmp_path / "m.gguf")
    (tmp_path / "config.json").write_text('{"a": 1}')
    m = manifest_of(tmp_path, algorithm)
    raw = gguf.read_bytes()
    want = blake3.blake3(raw).hexdigest() if algorithm is HashAlgorithm.blake3 else hashlib.sha256(raw).hexdigest()
    assert m.files["m.gguf"].digest == want and m.files["m.gguf"].layout == "whole"
    tool = {"blake3": "b3sum", "sha256": "sha256sum"}[algorithm.value]
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: `make test` installs it (make test-system-deps)")
    assert subprocess.run([tool, str(gguf)], capture_output=True, text=True, check=True).stdout.split()[0] == want


def test_safetensors_get_per_tensor_digests(tmp_path):
    path = corpus.write_single(tmp_path)
    m = manifest_of(tmp_path)
    fd = m.files["model.safetensors"]
    assert fd.layout == "segments" and len(fd.tensors) == 8
    raw = path.read_bytes()
    for t in fd.tensors.values():
        assert t.digest == blake3.blake3(raw[t.offset : t.offset + t.length]).hexdigest()


def test_one_flipped_bit_names_its_tensor(tmp_path):
    corpus.write_sharded(tmp_path)
    before = manifest_of(tmp_path)
    shard = "model-00002-of-00003.safetensors"
    target_name, target = sorted(before.files[shard].tensors.items())[1]
    corpus.flip_bit(tmp_path / shard, target.offset + target.length // 2, bit=3)
    results = run(tmp_path)
    assert [f for r in results for f in r.findings] == []  # structurally still fine
    findings = compare_manifests(before, build_manifest(results, HashAlgorithm.blake3))
    assert [(f.kind, f.file, f.tensor) for f in findings] == [(K.manifest_tensor_differs, shard, target_name)]
    assert findings[0].offset == target.offset


def test_manifest_names_missing_extra_and_changed_files(tmp_path):
    corpus.write_sharded(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    before = manifest_of(tmp_path)
    (tmp_path / "config.json").write_text('{"changed": true}')
    (tmp_path / "model-00003-of-00003.safetensors").unlink()
    (tmp_path / "notes.txt").write_text("new")
    after = manifest_of(tmp_path)
    got = {(f.kind, f.file) for f in compare_manifests(before, after)}
    assert got == {
        (K.manifest_file_differs, "config.json"),
        (K.manifest_file_missing, "model-00003-of-00003.safetensors"),
        (K.manifest_file_extra, "notes.txt"),
    }


def test_replica_kinds_and_labels(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    corpus.write_single(a)
    corpus.write_single(b)
    save_file({"x": np.ones(3, dtype=np.float32)}, str(b / "extra.safetensors"))
    ma, mb = manifest_of(a), manifest_of(b)
    assert ma.files["model.safetensors"] == mb.files["model.safetensors"]
    findings = compare_manifests(ma, mb, replica="region-b")
    assert [(f.kind, f.file) for f in findings] == [(K.replica_file_extra, "region-b:extra.safetensors")]


def test_manifest_round_trip_and_invalid(tmp_path):
    corpus.write_single(tmp_path)
    m = manifest_of(tmp_path)
    parsed, findings = parse_manifest(m.to_json(), "m.json")
    assert findings == [] and parsed == m
    assert compare_manifests(m, parsed) == []
    bad, findings = parse_manifest(b'{"files": 3}', "m.json")
    assert bad is None and [f.kind for f in findings] == [K.manifest_invalid]


def test_manifest_json_is_stable_and_readable(tmp_path):
    corpus.write_single(tmp_path)
    doc = json.loads(manifest_of(tmp_path).to_json())
    assert doc["algorithm"] == "blake3"
    assert set(doc["files"]["model.safetensors"]["tensors"]["layers.0.weight"]) == {"offset", "length", "digest"}


# ------------------------------------------------------------------ statistics

def test_tensor_statistics_nan_inf_zero(tmp_path):
    f32 = np.ones(64, dtype=np.float32)
    f32[3] = np.nan
    f16 = np.ones(16, dtype=np.float16)
    f16[0] = np.inf
    save_file({"nan": f32, "inf": f16, "zero": np.zeros((4, 4), dtype=np.int32), "fine": np.arange(1, 9, dtype=np.float64)},
              str(tmp_path / "model.safetensors"))
    (r,) = run(tmp_path, tensor_stats=True)
    got = sorted((f.kind, f.tensor) for f in r.findings)
    assert got == sorted([(K.tensor_nan, "nan"), (K.tensor_inf, "inf"), (K.tensor_all_zero, "zero")])
    report = build_report("x", [r], [], hash_algorithm="blake3", manifest_action="off")
    assert report.verdict is Verdict.warning and not report.failed
    (r,) = run(tmp_path, tensor_stats=False)
    assert r.findings == []


def test_bf16_statistics(tmp_path):
    from tasks.tensor_statistics import TensorStats

    bits = np.array([0x3F80, 0x7FC0, 0x7F80, 0xFF80, 0x0000], dtype=np.uint16)  # 1.0, NaN, +Inf, -Inf, 0
    stats = TensorStats("w", "BF16", 100)
    stats.add(bits.tobytes())
    assert (stats.nan, stats.inf, stats.nonzero) == (1, 2, True)


@pytest.mark.parametrize("dtype,special", [("F32", np.float32), ("F16", np.float16), ("F64", np.float64), ("BF16", None)])
def test_statistics_see_each_element_once_however_the_bytes_are_chunked(dtype, special):
    from tasks.tensor_statistics import TensorStats

    if special is None:  # BF16 as raw bits: 1.0, NaN, +Inf, 0
        raw = np.array([0x3F80, 0x7FC0, 0x7F80, 0x0000] * 5, dtype=np.uint16).tobytes()
    else:
        raw = np.array([1.0, np.nan, np.inf, 0.0] * 5, dtype=special).tobytes()
    for cut in (1, 3, 5, 7):  # chunks that split elements at every byte position
        stats = TensorStats("w", dtype, 0)
        for pos in range(0, len(raw), cut):
            stats.add(memoryview(raw)[pos : pos + cut])
        assert (stats.nan, stats.inf, stats.length, stats.findings("m")[0].kind) == (5, 5, len(raw), K.tensor_nan)


def test_only_nonzero_byte_in_a_split_element_still_counts():
    from tasks.tensor_statistics import TensorStats

    stats = TensorStats("w", "F32", 0)
    stats.add(bytes(6))
    stats.add(b"\x00\x01")  # completes element 2, whose last byte is not zero
    stats.add(bytes(3))  # and a trailing part-element of zeros
    assert stats.findings("m") == []


def test_remote_tensor_statistics_across_ranged_read_blocks(tmp_path):
    from tasks.checkpoint_source import STREAM_CHUNK

    # A 6-byte F16 tensor first shifts the F32 one off 4-byte alignment: the first 8 MiB ranged
    # block ends inside one of its elements, which is made a NaN.
    bias, big = np.ones(3, dtype=np.float16), np.ones(STREAM_CHUNK // 4 + 1000, dtype=np.float32)
    header = {"a.bias": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]},
              "b.weight": {"dtype": "F32", "shape": [big.size], "data_offsets": [6, 6 + big.nbytes]}}
    text = json.dumps(header, separators=(",", ":"))
    text += " " * (-len(text) % 8)
    big_start = 8 + len(text) + 6
    assert (STREAM_CHUNK - big_start) % 4
    big[(STREAM_CHUNK - big_start) // 4] = np.nan
    corpus.raw_safetensors(tmp_path / "model.safetensors", text, bias.tobytes() + big.tobytes())
    (local,) = run(tmp_path, tensor_stats=True)
    fs = _to_memory_fs(tmp_path, "/bucket/ckpt")
    (remote,) = verify_files(fs, "/bucket/ckpt", list_checkpoint_files(fs, "/bucket/ckpt"), VerifySettings(tensor_stats=True))
    assert [(f.kind, f.tensor, f.detail) for f in remote.findings] == [(K.tensor_nan, "b.weight", "1 NaN values")]
    assert [(f.kind, f.detail) for f in remote.findings] == [(f.kind, f.detail) for f in local.findings]
    assert remote.digest == local.digest


# ------------------------------------------------------------------ report

def test_report_verdicts_per_file_and_checkpoint(tmp_path):
    corpus.write_sharded(tmp_path / "good")
    corpus.write_single(tmp_path / "bad")
    corpus.truncate(tmp_path / "bad" / "model.safetensors", 1)
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "model.pt").write_bytes(corpus.malicious_pickle("os", "system"))
    results = run(tmp_path)
    report = build_report(str(tmp_path), results, cross_check_indexes(results), hash_algorithm="blake3", manifest_action="written")
    verdicts = {c.checkpoint: c.verdict for c in report.checkpoints}
    assert verdicts == {"good": Verdict.ok, "bad": Verdict.corrupt, "evil": Verdict.dangerous}
    assert report.verdict is Verdict.dangerous and report.failed
    md = report.markdown()
    assert "missing_bytes" in md and "os.system" in md and "Traceback" not in md
    rows = report.table_rows()
    assert {r["kind"] for r in rows} >= {"missing_bytes", "pickle_dangerous_global"}
    assert checkpoint_dirs([r.path for r in results]) == ["bad", "evil", "good"]


def test_replica_findings_land_on_the_checkpoint_they_name_whatever_the_replica_label(tmp_path):
    """A replica given as a URL (``s3://...``) labels its findings with a colon of its own: they
    must still count against the checkpoint they name, not a made-up one beside it."""
    corpus.write_single(tmp_path / "ckpt-1")
    corpus.write_single(tmp_path / "ckpt-2")
    results = run(tmp_path)
    for replica in ("region-b", "s3://bucket-b/models"):
        differs = compare_manifests(manifest_of(tmp_path), manifest_of(tmp_path), replica=replica)
        assert differs == []
        missing = finding(K.replica_file_missing, f"{replica}:ckpt-1/model.safetensors", "present in the primary, absent in the replica")
        report = build_report(str(tmp_path), results, [missing], hash_algorithm="blake3", manifest_action="off", replica=replica)
        verdicts = {c.checkpoint: c.verdict for c in report.checkpoints}
        assert verdicts == {"ckpt-1": Verdict.corrupt, "ckpt-2": Verdict.ok}, replica
        assert [r["checkpoint"] for r in report.table_rows() if r["kind"]] == ["ckpt-1"]
    assert finding_checkpoint("run:7/model.safetensors", None) == "run:7"  # a primary path keeps its own colon


# ------------------------------------------------------------------ remote (ranged) reads

def _to_memory_fs(local: Path, root: str):
    fs = fsspec.filesystem("memory", skip_instance_cache=True)
    fs.store.clear()
    for path in local.rglob("*"):
        if path.is_file():
            fs.pipe_file(f"{root}/{path.relative_to(local)}", path.read_bytes())
    return fs


def test_remote_source_gives_the_same_verdicts_and_digests(tmp_path):
    corpus.write_sharded(tmp_path / "ckpt")
    corpus.torch_zip(tmp_path / "ckpt" / "extra.pt", corpus.malicious_pickle("os", "system"))
    local = run(tmp_path / "ckpt")
    fs = _to_memory_fs(tmp_path / "ckpt", "/bucket/ckpt")
    files = list_checkpoint_files(fs, "/bucket/ckpt")
    remote = verify_files(fs, "/bucket/ckpt", files, VerifySettings())
    assert [(r.path, r.digest, [f.kind for f in r.findings]) for r in remote] == [
        (r.path, r.digest, [f.kind for f in r.findings]) for r in local
    ]
    assert [f.kind for r in remote for f in r.findings] == [K.pickle_dangerous_global]


def test_header_check_reads_only_the_header(tmp_path):
    from tasks.checkpoint_source import RemoteSource
    from tasks.safetensors_header import read_safetensors_header

    save_file({"big": np.ones(1 << 20, dtype=np.float32)}, str(tmp_path / "big.safetensors"))
    fs = _to_memory_fs(tmp_path, "/b")
    source = RemoteSource(fs, "/b/big.safetensors")
    read = []
    original = source.read_at
    source.read_at = lambda offset, length: read.append(length) or original(offset, length)
    header, findings = read_safetensors_header(source, "big.safetensors")
    assert findings == [] and header.tensors[0].length == 4 << 20
    assert sum(read) < 4096  # of a 4 MiB file


def test_sha256_mode_gives_the_standard_file_digest_and_still_names_tensors(tmp_path):
    corpus.write_sharded(tmp_path)
    shard = "model-00002-of-00003.safetensors"
    before = manifest_of(tmp_path, HashAlgorithm.sha256)
    fd = before.files[shard]
    raw = (tmp_path / shard).read_bytes()
    assert fd.layout == "whole" and fd.digest == hashlib.sha256(raw).hexdigest()
    target_name, target = sorted(fd.tensors.items())[0]
    assert target.digest == hashlib.sha256(raw[target.offset : target.offset + target.length]).hexdigest()
    corpus.flip_bit(tmp_path / shard, target.offset, bit=0)
    findings = compare_manifests(before, manifest_of(tmp_path, HashAlgorithm.sha256))
    assert [(f.kind, f.file, f.tensor) for f in findings] == [(K.manifest_tensor_differs, shard, target_name)]


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../other/checkpoint-manifest.json", "a/../../m.json", "dir/", "./m.json"])
def test_manifest_path_must_stay_below_the_prefix(path: str) -> None:
    from flows.checkpoint_verification import VerifyOptions

    with pytest.raises(ValueError, match="manifest_path"):
        VerifyOptions(manifest_path=path)
    assert VerifyOptions(manifest_path="manifests/llama.json").manifest_path == "manifests/llama.json"


def test_a_json_file_that_is_not_a_manifest_is_not_read_as_an_empty_one() -> None:
    from tasks.checkpoint_manifest import parse_manifest

    manifest, findings = parse_manifest(b'{"model_type": "llama"}', "config.json")
    assert manifest is None and [(f.kind.value, f.file) for f in findings] == [("manifest_invalid", "config.json")]
    written = IntegrityManifest().to_json()
    assert parse_manifest(written, "m.json") == (IntegrityManifest.model_validate_json(written), [])
