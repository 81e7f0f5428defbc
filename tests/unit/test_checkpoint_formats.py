"""Each corrupt file yields exactly its named finding; each clean one passes (structure checks)."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import fsspec
import numpy as np
import pytest
import safetensors
from safetensors.numpy import load_file

from tasks.checkpoint_findings import FindingKind as K
from tasks.checkpoint_source import LocalSource
from tasks.checkpoint_verifier import CheckpointFile, VerifySettings, cross_check_indexes, list_checkpoint_files, verify_files
from tasks.gguf_header import read_gguf_header
from tasks.pickle_scan import scan_pickle_file
from tasks.safetensors_header import read_safetensors_header
from tests import checkpoint_corpus as corpus


def st_kinds(path: Path) -> list[K]:
    src = LocalSource(str(path))
    try:
        _, findings = read_safetensors_header(src, path.name)
    finally:
        src.close()
    return [f.kind for f in findings]


def reference_rejects(path: Path) -> bool:
    try:
        load_file(str(path))
    except (safetensors.SafetensorError, Exception):  # noqa: BLE001 - the oracle raises several types
        return True
    return False


# ------------------------------------------------------------------ safetensors, one file

def test_clean_single_file_passes_and_reference_agrees(tmp_path):
    path = corpus.write_single(tmp_path)
    assert st_kinds(path) == []
    assert not reference_rejects(path)


def _valid_header():
    return {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "b": {"dtype": "I8", "shape": [4], "data_offsets": [16, 20]}}


CORRUPT_CASES = {
    "header_too_small": (lambda p: p.write_bytes(b"\x01\x02\x03"), K.header_too_small),
    "header_too_large": (lambda p: p.write_bytes(struct.pack("<Q", 100_000_001) + b"{}"), K.header_too_large),
    "header_length_past_eof": (lambda p: corpus.raw_safetensors(p, b"{}", length=500), K.header_length_past_eof),
    "header_not_utf8": (lambda p: corpus.raw_safetensors(p, b'{"a\xff\xfe": 1}'), K.header_not_utf8),
    "header_bad_start": (lambda p: corpus.raw_safetensors(p, b' {"a": 1}'), K.header_bad_start),
    "header_invalid_json": (lambda p: corpus.raw_safetensors(p, b'{"a": {"dtype": "F32",'), K.header_invalid_json),
    "unknown_dtype": (lambda p: corpus.raw_safetensors(p, {"a": {"dtype": "F17", "shape": [2], "data_offsets": [0, 4]}}, bytes(4)), K.unknown_dtype),
    "metadata_not_strings": (lambda p: corpus.raw_safetensors(p, {"__metadata__": {"step": 5}, **_valid_header()}, bytes(20)), K.metadata_not_strings),
    "offsets_gap": (lambda p: corpus.raw_safetensors(p, {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "b": {"dtype": "I8", "shape": [4], "data_offsets": [20, 24]}}, bytes(24)), K.offsets_gap),
    "offsets_overlap": (lambda p: corpus.raw_safetensors(p, {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "b": {"dtype": "I8", "shape": [4], "data_offsets": [12, 16]}}, bytes(16)), K.offsets_overlap),
    "tensor_size_mismatch": (lambda p: corpus.raw_safetensors(p, {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}}, bytes(16)), K.tensor_size_mismatch),
    "validation_overflow": (lambda p: corpus.raw_safetensors(p, {"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}}, bytes(16)), K.validation_overflow),
    "missing_bytes": (lambda p: corpus.raw_safetensors(p, _valid_header(), bytes(18)), K.missing_bytes),
    "trailing_bytes": (lambda p: corpus.raw_safetensors(p, _valid_header(), bytes(24)), K.trailing_bytes),
    "duplicate_tensor": (lambda p: corpus.raw_safetensors(p, '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4)), K.duplicate_tensor),
    "header_is_array": (lambda p: corpus.raw_safetensors(p, b"[1, 2]"), K.header_bad_start),
    "tensor_misaligned_bits": (lambda p: corpus.raw_safetensors(p, {"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, bytes(2)), K.tensor_misaligned_bits),
    "offsets_inverted": (lambda p: corpus.raw_safetensors(p, {"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, bytes(8)), K.offsets_inverted),
    "tensor_invalid_info": (lambda p: corpus.raw_safetensors(p, {"a": {"dtype": "F32", "shape": "2x2", "data_offsets": [0, 16]}}, bytes(16)), K.tensor_invalid_info),
    "lone_surrogate_escape": (lambda p: corpus.raw_safetensors(p, '{"\\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', bytes(1)), K.header_invalid_json),
    "repeated_entry_field": (lambda p: corpus.raw_safetensors(p, '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"dtype":"F32"}}', bytes(1)), K.tensor_invalid_info),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_CASES))
def test_each_corrupt_safetensors_yields_exactly_its_kind(tmp_path, case):
    make, kind = CORRUPT_CASES[case]
    path = tmp_path / "bad.safetensors"
    make(path)
    assert st_kinds(path) == [kind]


@pytest.mark.parametrize("case", sorted(set(CORRUPT_CASES) - {"duplicate_tensor"}))
def test_reference_loader_also_rejects_each_corrupt_case(tmp_path, case):
    # The oracle: every structural case we flag, the reference loader refuses too
    # (except duplicate names, which serde silently collapses: our extra check).
    make, _ = CORRUPT_CASES[case]
    path = tmp_path / "bad.safetensors"
    make(path)
    assert reference_rejects(path)


def test_truncated_real_file_is_missing_bytes(tmp_path):
    path = corpus.write_single(tmp_path)
    corpus.truncate(path, 7)
    kinds = st_kinds(path)
    assert kinds == [K.missing_bytes]


def test_finding_carries_file_tensor_and_offset(tmp_path):
    path = corpus.raw_safetensors(tmp_path / "x.safetensors", {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}}, bytes(16))
    src = LocalSource(str(path))
    _, findings = read_safetensors_header(src, "x.safetensors")
    src.close()
    (f,) = findings
    assert (f.file, f.tensor) == ("x.safetensors", "a")
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert f.offset == 8 + n
    assert "24" in f.detail  # the size shape x dtype needs


# ------------------------------------------------------------------ sharded

def _verify_dir(directory: Path, **settings):
    fs = fsspec.filesystem("file")
    files = list_checkpoint_files(fs, str(directory))
    results = verify_files(fs, str(directory), files, VerifySettings(**settings))
    return results, cross_check_indexes(results)


def test_clean_sharded_checkpoint_passes(tmp_path):
    corpus.write_sharded(tmp_path)
    results, cross = _verify_dir(tmp_path, compute_hashes=False)
    assert [f for r in results for f in r.findings] == []
    assert cross == []
    assert len(results) == 4


def test_missing_shard(tmp_path):
    corpus.write_sharded(tmp_path)
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    _, cross = _verify_dir(tmp_path, compute_hashes=False)
    assert [(f.kind, f.file) for f in cross] == [(K.shard_missing, "model-00002-of-00003.safetensors")]


def test_shard_with_tensor_the_index_does_not_list(tmp_path):
    index = corpus.write_sharded(tmp_path)
    doc = json.loads(index.read_text())
    dropped = sorted(k for k, v in doc["weight_map"].items() if v.startswith("model-00001"))[0]
    del doc["weight_map"][dropped]
    doc["metadata"]["total_size"] -= load_file(str(tmp_path / "model-00001-of-00003.safetensors"))[dropped].nbytes
    index.write_text(json.dumps(doc))
    _, cross = _verify_dir(tmp_path, compute_hashes=False)
    assert [(f.kind, f.tensor) for f in cross] == [(K.shard_unlisted_tensor, dropped)]


def test_index_assigns_tensor_the_shard_lacks(tmp_path):
    index = corpus.write_sharded(tmp_path)
    doc = json.loads(index.read_text())
    doc["weight_map"]["ghost.weight"] = "model-00003-of-00003.safetensors"
    index.write_text(json.dumps(doc))
    _, cross = _verify_dir(tmp_path, compute_hashes=False)
    assert [(f.kind, f.tensor) for f in cross] == [(K.shard_missing_tensor, "ghost.weight")]


def test_wrong_total_size(tmp_path):
    index = corpus.write_sharded(tmp_path)
    doc = json.loads(index.read_text())
    doc["metadata"]["total_size"] += 1
    index.write_text(json.dumps(doc))
    _, cross = _verify_dir(tmp_path, compute_hashes=False)
    assert [f.kind for f in cross] == [K.total_size_mismatch]


def test_stray_shard(tmp_path):
    corpus.write_sharded(tmp_path)
    corpus.write_single(tmp_path, name="model-00004-of-00003.safetensors")
    _, cross = _verify_dir(tmp_path, compute_hashes=False)
    assert [(f.kind, f.file) for f in cross] == [(K.stray_shard, "model-00004-of-00003.safetensors")]


def test_index_not_json_and_broken_shard_do_not_stop_the_others(tmp_path):
    sub_a, sub_b = tmp_path / "a", tmp_path / "b"
    corpus.write_sharded(sub_a)
    (sub_a / "model.safetensors.index.json").write_text("{not json")
    corpus.write_sharded(sub_b)
    corpus.truncate(sub_b / "model-00001-of-00003.safetensors", 3)
    results, cross = _verify_dir(tmp_path, compute_hashes=False)
    by = {r.path: [f.kind for f in r.findings] for r in results}
    assert by["a/model.safetensors.index.json"] == [K.index_invalid_json]
    assert by["b/model-00001-of-00003.safetensors"] == [K.missing_bytes]
    assert cross == []  # the truncated shard's header still matches the index: its own finding says it all
    assert by["b/model-00002-of-00003.safetensors"] == []


def test_unreadable_file_is_a_finding(tmp_path):
    corpus.write_single(tmp_path)
    fs = fsspec.filesystem("file")
    missing = CheckpointFile(path="gone.safetensors", size=10)
    results = verify_files(fs, str(tmp_path), [missing, CheckpointFile(path="model.safetensors", size=(tmp_path / "model.safetensors").stat().st_size)], VerifySettings())
    assert [f.kind for f in results[0].findings] == [K.file_unreadable]
    assert results[1].findings == [] and results[1].digest is not None


def test_shard_with_broken_header_is_unreadable_for_the_index(tmp_path):
    corpus.write_sharded(tmp_path)
    corpus.raw_safetensors(tmp_path / "model-00003-of-00003.safetensors", b"{broken")
    results, cross = _verify_dir(tmp_path, compute_hashes=False)
    assert [f.kind for r in results for f in r.findings] == [K.header_invalid_json]
    assert [(f.kind, f.file) for f in cross] == [(K.shard_unreadable, "model-00003-of-00003.safetensors")]


# ------------------------------------------------------------------ GGUF

def gguf_kinds(path: Path) -> list[K]:
    src = LocalSource(str(path))
    try:
        return [f.kind for f in read_gguf_header(src, path.name)[1]]
    finally:
        src.close()


def test_real_smollm2_gguf_verifies_clean():
    from deployments.stack.model_file import smollm2_gguf_path

    path = smollm2_gguf_path()
    src = LocalSource(str(path))
    header, findings = read_gguf_header(src, path.name)
    src.close()
    assert findings == []
    assert header.tensor_count == len(header.tensors) > 100
    assert header.metadata["general.architecture"] == "llama"
    assert max(t.start + t.length for t in header.tensors) == path.stat().st_size  # data ends exactly at EOF


def test_small_gguf_clean(tmp_path):
    assert gguf_kinds(corpus.write_gguf(tmp_path / "m.gguf")) == []


@pytest.mark.parametrize("kwargs,kind", [
    ({"magic": b"GGML"}, K.gguf_bad_magic),
    ({"version": 9}, K.gguf_bad_version),
    ({"truncate_header": True}, K.gguf_truncated),
    ({"misalign": True}, K.gguf_offset_misaligned),
    ({"out_of_bounds": True}, K.gguf_offset_out_of_bounds),
])
def test_corrupt_gguf(tmp_path, kwargs, kind):
    assert gguf_kinds(corpus.write_gguf(tmp_path / "m.gguf", **kwargs)) == [kind]


def test_gguf_implausible_count(tmp_path):
    path = corpus.write_gguf(tmp_path / "m.gguf")
    raw = bytearray(path.read_bytes())
    raw[8:16] = struct.pack("<Q", 2**40)
    path.write_bytes(raw)
    assert gguf_kinds(path) == [K.gguf_implausible_count]


def _gguf_with_tensors(path: Path, tensors: list[tuple[str, int, int]], data_bytes: int = 256) -> Path:
    """A GGUF of 1-D F32 tensors given as (name, elements, data offset), default alignment 32."""
    def gstr(s: str) -> bytes:
        return struct.pack("<Q", len(s.encode())) + s.encode()

    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 0)
    head += b"".join(gstr(n) + struct.pack("<IQIQ", 1, count, 0, offset) for n, count, offset in tensors)
    path.write_bytes(head + b"\0" * (-len(head) % 32) + b"\1" * data_bytes)
    return path


@pytest.mark.parametrize("tensors,kinds", [
    ([("a", 3, 0), ("b", 8, 32), ("c", 8, 64)], []),                     # 12 bytes padded to 32: what llama.cpp writes
    ([("w", 8, 0), ("w", 8, 32)], [K.duplicate_tensor]),
    ([("a", 8, 0), ("b", 8, 0)], [K.offsets_overlap]),
    ([("a", 8, 0), ("b", 8, 64)], [K.offsets_gap]),
    ([("a", 8, 32), ("b", 8, 0)], [K.offsets_gap, K.offsets_overlap]),  # out of order
    ([("a", 3, 0), ("b", 8, 12)], [K.gguf_offset_misaligned]),          # one finding for one bad offset
    ([("n" * 63, 8, 0), ("é" * 32, 8, 32)], [K.gguf_invalid_metadata]),  # 63 bytes fit GGML_MAX_NAME; 64 (32 chars) do not
], ids=["padded_run", "duplicate_name", "overlap", "gap", "out_of_order", "unpadded", "name_too_long"])
def test_gguf_tensor_names_and_offsets_follow_llama_cpp(tmp_path, tensors, kinds):
    src = LocalSource(str(_gguf_with_tensors(tmp_path / "m.gguf", tensors)))
    try:
        _, findings = read_gguf_header(src, "m.gguf")
    finally:
        src.close()
    assert [f.kind for f in findings] == kinds
    assert all(f.tensor in {n for n, _, _ in tensors} and f.file == "m.gguf" for f in findings)


# ------------------------------------------------------------------ pickle

def pickle_findings(path: Path):
    with open(path, "rb") as fh:
        return scan_pickle_file(fh, path.name)


def test_clean_torch_style_zip_and_bare_pickle_pass(tmp_path):
    zipped = corpus.torch_zip(tmp_path / "pytorch_model.bin", corpus.torch_state_dict_pickle())
    bare = tmp_path / "legacy.pt"
    bare.write_bytes(corpus.torch_state_dict_pickle() + np.ones(8, dtype=np.float32).tobytes())
    assert pickle_findings(zipped) == []
    assert pickle_findings(bare) == []


@pytest.mark.parametrize("module,name", [
    ("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("subprocess", "check_output"),
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("__builtin__", "eval"), ("socket", "create_connection"), ("runpy", "_run_code"), ("shutil", "rmtree"),
])
def test_dangerous_import_is_named(tmp_path, module, name):
    path = corpus.torch_zip(tmp_path / "evil.ckpt", corpus.malicious_pickle(module, name))
    findings = pickle_findings(path)
    assert [f.kind for f in findings] == [K.pickle_dangerous_global]
    assert f"{module}.{name}" in findings[0].detail
    assert "archive/data.pkl" in findings[0].detail


def test_unallowed_import_is_named(tmp_path):
    path = tmp_path / "odd.pt"
    path.write_bytes(corpus.malicious_pickle("mypackage.helpers", "make_model"))
    findings = pickle_findings(path)
    assert [f.kind for f in findings] == [K.pickle_unallowed_global]
    assert "mypackage.helpers.make_model" in findings[0].detail


def test_stack_global_from_real_pickle_dumps(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(corpus.stack_global_pickle())
    findings = pickle_findings(path)
    assert [f.kind for f in findings] == [K.pickle_dangerous_global]
    assert "system" in findings[0].detail


def test_payload_after_a_clean_pickle_is_found(tmp_path):
    path = tmp_path / "two.bin"
    path.write_bytes(corpus.torch_state_dict_pickle() + corpus.malicious_pickle("os", "system"))
    assert [f.kind for f in pickle_findings(path)] == [K.pickle_dangerous_global]


def test_not_a_pickle(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"\xff\x00garbage")
    assert [f.kind for f in pickle_findings(path)] == [K.pickle_invalid]


def test_broken_zip(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(corpus.zip_bytes(corpus.torch_state_dict_pickle())[:40])
    assert [f.kind for f in pickle_findings(path)] == [K.zip_invalid]


def _real_imports(data: bytes) -> list[tuple[str, str]]:
    """What pickle.loads imports from ``data``, with every import stubbed out (nothing runs)."""
    seen: list[tuple[str, str]] = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):  # noqa: ANN001, ANN202
            seen.append((module, name))
            return lambda *args, **kwargs: None

    try:
        Recorder(io.BytesIO(data)).load()
    except Exception:  # noqa: BLE001, S110 - only the imports made before any failure matter
        pass
    return seen


def _u(text: str) -> bytes:  # SHORT_BINUNICODE
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


# MEMOIZE stores at len(memo), which BINPUTs to arbitrary indexes grow too: a scanner with its own
# MEMOIZE counter resolves BINGET 2/3 to torch._utils._rebuild_tensor; pickle.loads to os.system.
MEMO_DESYNC = (
    b"\x80\x04" + _u("junk") + b"q\x640" + _u("junk") + b"q\x650"
    + _u("os") + b"\x940" + _u("system") + b"\x940" + _u("torch._utils") + b"\x940" + _u("_rebuild_tensor") + b"\x940"
    + b"h\x02h\x03\x93" + b"(" + _u("echo pwned") + b"tR."
)
# MEMOIZE overwrites a slot a BINPUT filled when len(memo) lands on it: BINGET 1/2 give os.system.
MEMO_OVERWRITE = (
    b"\x80\x04" + _u("torch._utils") + b"q\x010" + _u("os") + b"\x940"      # memo {1: os}
    + _u("_rebuild_tensor") + b"q\x020" + _u("system") + b"\x940"              # memo {1: os, 2: system}
    + b"h\x01h\x02\x93" + b")R."
)


@pytest.mark.parametrize("data", [MEMO_DESYNC, MEMO_OVERWRITE], ids=["desync", "overwrite"])
def test_memo_games_cannot_hide_a_global(tmp_path, data):
    assert ("os", "system") in _real_imports(data)  # the oracle: loading would call os.system
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(data)
    findings = pickle_findings(path)
    assert [f.kind for f in findings] == [K.pickle_dangerous_global]
    assert "os.system" in findings[0].detail


@pytest.mark.parametrize("before", [b"", corpus.torch_state_dict_pickle()], ids=["first_pickle", "later_pickle"])
def test_imports_before_a_break_are_reported_with_the_break(tmp_path, before):
    broken = b"\x80\x02cos\nsystem\n)R" + b"\xff"  # REDUCE runs os.system, then a junk opcode
    assert ("os", "system") in _real_imports(broken)
    path = tmp_path / "legacy.pt"
    path.write_bytes(before + broken)
    findings = pickle_findings(path)
    assert [f.kind for f in findings] == [K.pickle_dangerous_global, K.pickle_invalid]
    assert "os.system" in findings[0].detail
    assert findings[1].offset == len(before)


def test_raw_storage_bytes_after_legacy_pickles_are_not_imports(tmp_path):
    # A legacy torch.save tail: int64 numel, then tensor bytes. These decode as BINFLOAT,
    # EMPTY_TUPLE, STACK_GLOBAL, junk: the unpickler would refuse STACK_GLOBAL on non-strings.
    tail = struct.pack("<q", 0x47) + b"\x00" + b")\x93\xbc" + np.ones(8, dtype=np.float32).tobytes()
    path = tmp_path / "legacy.pt"
    path.write_bytes(corpus.torch_state_dict_pickle() + pickle.dumps(["0", "1"], protocol=2) + tail)
    assert pickle_findings(path) == []


def test_zip_with_unsupported_version_is_a_finding(tmp_path):
    raw = bytearray(corpus.zip_bytes(corpus.torch_state_dict_pickle()))
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 6] = 200  # "version needed to extract" 20.0: zipfile raises NotImplementedError
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(raw)
    findings = pickle_findings(path)
    assert [f.kind for f in findings] == [K.zip_invalid]
    assert "NotImplementedError" in findings[0].detail


# ------------------------------------------------------------------ hostile input: findings, never tracebacks

@pytest.mark.parametrize("arrays", [125, 126])
def test_header_nesting_limit_matches_the_reference_loader(tmp_path, arrays):
    # top object + tensor entry + N arrays: serde_json reads 127 levels, refuses 128.
    header = '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":' + "[" * arrays + "]" * arrays + "}}"
    path = corpus.raw_safetensors(tmp_path / "deep.safetensors", header, b"\x01")
    assert (st_kinds(path) == [K.header_invalid_json]) == reference_rejects(path) == (arrays + 2 > 127)


def test_deeply_nested_header_and_index_are_findings(tmp_path):
    corpus.write_single(tmp_path)
    deep = "[" * 65536 + "]" * 65536
    corpus.raw_safetensors(tmp_path / "evil.safetensors", '{"a":' + deep + "}")
    (tmp_path / "sharded").mkdir()
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text('{"weight_map":' + deep + "}")
    results, _ = _verify_dir(tmp_path)
    by = {r.path: r.findings for r in results}
    assert [(f.kind, f.file) for f in by["evil.safetensors"]] == [(K.header_invalid_json, "evil.safetensors")]
    assert "nested too deep" in by["evil.safetensors"][0].detail
    assert [f.kind for f in by["sharded/model.safetensors.index.json"]] == [K.index_invalid_json]
    assert by["model.safetensors"] == []


def test_index_total_size_infinity_is_a_finding():
    from tasks.safetensors_index import parse_index

    index, findings = parse_index(b'{"weight_map": {"w": "model.safetensors"}, "metadata": {"total_size": Infinity}}', "model.safetensors.index.json")
    assert index is None
    assert [f.kind for f in findings] == [K.index_invalid]


def _failing_gguf_parser(exc: BaseException):
    def parse(source, path):  # noqa: ANN001, ANN202, ARG001
        raise exc
    return parse


def test_unforeseen_parser_exception_is_that_files_finding(tmp_path, monkeypatch):
    import tasks.checkpoint_verifier as verifier

    corpus.write_single(tmp_path)
    corpus.write_gguf(tmp_path / "m.gguf")
    monkeypatch.setattr(verifier, "read_gguf_header", _failing_gguf_parser(RuntimeError("parser bug")))
    results, _ = _verify_dir(tmp_path)
    by = {r.path: r for r in results}
    (f,) = by["m.gguf"].findings
    assert (f.kind, f.file) == (K.verifier_error, "m.gguf")
    assert "RuntimeError: parser bug" in f.detail
    assert by["m.gguf"].digest is None
    assert by["model.safetensors"].findings == [] and by["model.safetensors"].digest is not None


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1)])
def test_interrupts_are_not_swallowed(tmp_path, monkeypatch, exc):
    import tasks.checkpoint_verifier as verifier

    corpus.write_gguf(tmp_path / "m.gguf")
    monkeypatch.setattr(verifier, "read_gguf_header", _failing_gguf_parser(exc))
    with pytest.raises(type(exc)):
        _verify_dir(tmp_path)
