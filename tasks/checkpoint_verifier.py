"""Verify the files of a checkpoint location: structure by format, one hashing pass, optional stats.

Plain Python over an fsspec file system; ``tasks.checkpoint_verification`` wraps it in @tasks.
Files are checked on a thread pool (hashers and mmap reads release the GIL), so every core works;
a bad file yields findings and never stops the others.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import fsspec
from pydantic import BaseModel, Field

from tasks.checkpoint_findings import Finding, FindingKind, Severity, finding
from tasks.checkpoint_manifest import (
    MANIFEST_NAME,
    FileDigest,
    HashAlgorithm,
    IntegrityManifest,
    TensorDigest,
    new_hasher,
    segment_file_digest,
)
from tasks.checkpoint_source import ByteSource, open_source
from tasks.gguf_header import read_gguf_header
from tasks.pickle_scan import PICKLE_SUFFIXES, scan_pickle_file
from tasks.safetensors_header import read_safetensors_header
from tasks.safetensors_index import INDEX_SUFFIX, ShardIndex, check_index, parse_index
from tasks.tensor_statistics import TensorStats

FileFormat = Literal["safetensors", "safetensors_index", "gguf", "pickle", "other"]
MAX_INDEX_BYTES = 64 * 1024 * 1024


def file_format(path: str) -> FileFormat:
    name = path.lower()
    if name.endswith(INDEX_SUFFIX):
        return "safetensors_index"
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".gguf"):
        return "gguf"
    if name.endswith(PICKLE_SUFFIXES):
        return "pickle"
    return "other"


class CheckpointFile(BaseModel):
    path: str  # relative to the checkpoint prefix, '/'-separated
    size: int


class TensorRecord(BaseModel):
    name: str
    dtype: str
    start: int
    length: int


class FileResult(BaseModel):
    path: str
    format: FileFormat
    size: int
    findings: list[Finding] = Field(default_factory=list)
    header_ok: bool = True
    tensors: list[TensorRecord] = Field(default_factory=list)  # safetensors: from the header
    index_weight_map: dict[str, str] | None = None
    index_total_size: int | None = None
    digest: FileDigest | None = None

    @property
    def verdict(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)


class VerifySettings(BaseModel):
    hash_algorithm: HashAlgorithm = HashAlgorithm.blake3
    compute_hashes: bool = True
    tensor_stats: bool = False
    max_workers: int = Field(default_factory=lambda: os.cpu_count() or 2)


def list_checkpoint_files(fs: fsspec.AbstractFileSystem, root: str, exclude: Iterable[str] = (MANIFEST_NAME,)) -> list[CheckpointFile]:
    """Every file under ``root`` (recursively), except ``exclude`` (the manifest this tool writes)."""
    exclude = set(exclude)
    root = root.rstrip("/")
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return []
    if not isinstance(found, dict):  # some file systems return a list when detail is ignored
        found = {p: fs.info(p) for p in found}
    files = []
    for path, info in found.items():
        if info.get("type", "file") != "file":
            continue
        rel = path[len(root):].lstrip("/") if path.startswith(root) else posixpath.basename(path)
        if not rel or rel in exclude:
            continue
        files.append(CheckpointFile(path=rel, size=int(info.get("size") or 0)))
    return sorted(files, key=lambda f: f.path)


def verify_files(fs: fsspec.AbstractFileSystem, root: str, files: Iterable[CheckpointFile], settings: VerifySettings) -> list[FileResult]:
    files = list(files)
    workers = max(1, min(settings.max_workers, len(files)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ckpt-verify") as pool:
        return list(pool.map(lambda f: verify_file(fs, root, f, settings), files))


def verify_file(fs: fsspec.AbstractFileSystem, root: str, file: CheckpointFile, settings: VerifySettings) -> FileResult:
    result = FileResult(path=file.path, format=file_format(file.path), size=file.size)
    full = f"{root.rstrip('/')}/{file.path}"
    try:
        source = open_source(fs, full, file.size)
    except (OSError, ValueError) as exc:
        return _unverified(result, f"cannot open: {exc}")
    except Exception as exc:  # noqa: BLE001 - one file's failure is its finding, never the batch's
        return _unverified(result, f"cannot open: {type(exc).__name__}: {exc}")
    try:
        result.size = source.size
        _check_structure(source, result)
        if settings.compute_hashes or settings.tensor_stats:
            _hash_and_stats(source, result, settings)
    except (OSError, ValueError) as exc:
        _unverified(result, f"read failed: {exc}")
    except Exception as exc:  # noqa: BLE001 - hostile input a parser did not foresee; BaseException (Ctrl-C, cancellation) passes
        _unverified(result, f"verification failed: {type(exc).__name__}: {exc}", FindingKind.verifier_error)
    finally:
        source.close()
    return result


def _unverified(result: FileResult, detail: str, kind: FindingKind = FindingKind.file_unreadable) -> FileResult:
    """The file could not be checked (unreadable, or an exception no parser turned into a
    finding, kept apart as ``verifier_error`` because it points at the verifier, not the
    storage): this file is unverified and has no digest, the others go on."""
    result.findings.append(finding(kind, result.path, detail))
    result.header_ok = False
    result.digest = None
    return result


def _check_structure(source: ByteSource, result: FileResult) -> None:
    path = result.path
    if result.format == "safetensors":
        header, findings = read_safetensors_header(source, path)
        result.findings += findings
        result.header_ok = header is not None
        if header is not None:
            result.tensors = [TensorRecord(name=t.name, dtype=t.dtype, start=t.start, length=t.length) for t in header.tensors]
    elif result.format == "safetensors_index":
        if source.size > MAX_INDEX_BYTES:
            result.findings.append(finding(FindingKind.index_invalid, path, f"{source.size} bytes is too large for an index"))
            return
        index, findings = parse_index(bytes(source.read_at(0, source.size)), path)
        result.findings += findings
        if index is not None:
            result.index_weight_map, result.index_total_size = index.weight_map, index.total_size
    elif result.format == "gguf":
        _, findings = read_gguf_header(source, path)
        result.findings += findings
    elif result.format == "pickle":
        with source.fileobj() as fh:
            result.findings += scan_pickle_file(fh, path)


def _hash_and_stats(source: ByteSource, result: FileResult, settings: VerifySettings) -> None:
    """One pass over the bytes: segment digests for a clean safetensors file, else a whole-file digest."""
    algorithm = settings.hash_algorithm
    clean = result.format == "safetensors" and result.header_ok and not any(f.severity is not Severity.warning for f in result.findings)
    if clean:
        tensors = sorted(result.tensors, key=lambda t: t.start)
        header_end = tensors[0].start if tensors else source.size
        segments: list[tuple[int, int, str]] = []
        # SHA-256 is asked for when a standard digest is needed (sha256sum, a Hub LFS oid): the
        # same single pass also feeds a whole-file hasher, since header + tensors cover the file.
        whole = new_hasher(algorithm, source.size) if settings.compute_hashes and algorithm is HashAlgorithm.sha256 else None
        h = new_hasher(algorithm, header_end)
        for chunk in source.iter_range(0, header_end):
            h.update(chunk)
            if whole is not None:
                whole.update(chunk)
        segments.append((0, header_end, h.hexdigest()))
        digests: dict[str, TensorDigest] = {}
        for t in tensors:
            h = new_hasher(algorithm, t.length) if settings.compute_hashes else None
            stats = TensorStats(t.name, t.dtype, t.start) if settings.tensor_stats else None
            for chunk in source.iter_range(t.start, t.start + t.length):
                if h is not None:
                    h.update(chunk)
                if whole is not None:
                    whole.update(chunk)
                if stats is not None:
                    stats.add(chunk)
            if stats is not None:
                result.findings += stats.findings(result.path)
            if h is not None:
                digest = h.hexdigest()
                digests[t.name] = TensorDigest(offset=t.start, length=t.length, digest=digest)
                segments.append((t.start, t.length, digest))
        if whole is not None:
            result.digest = FileDigest(size=source.size, digest=whole.hexdigest(), layout="whole", tensors=digests)
        elif settings.compute_hashes:
            result.digest = FileDigest(size=source.size, digest=segment_file_digest(algorithm, segments), layout="segments", tensors=digests)
        return
    if settings.compute_hashes:
        h = new_hasher(algorithm, source.size)
        for chunk in source.iter_range(0, source.size):
            h.update(chunk)
        result.digest = FileDigest(size=source.size, digest=h.hexdigest(), layout="whole")


def cross_check_indexes(results: list[FileResult]) -> list[Finding]:
    """Each index against the shard headers beside it."""
    by_path = {r.path: r for r in results}
    findings: list[Finding] = []
    for r in results:
        if r.format != "safetensors_index" or r.index_weight_map is None:
            continue
        directory = posixpath.dirname(r.path)
        siblings = {p for p, s in by_path.items() if s.format == "safetensors" and posixpath.dirname(p) == directory}
        headers = {p: (by_path[p].tensors if by_path[p].header_ok else None) for p in siblings}
        findings += check_index(ShardIndex(r.index_weight_map, r.index_total_size), r.path, headers, siblings)
    return findings


def build_manifest(results: list[FileResult], algorithm: HashAlgorithm) -> IntegrityManifest:
    return IntegrityManifest(algorithm=algorithm, files={r.path: r.digest for r in results if r.digest is not None})


def checkpoint_of(path: str) -> str:
    """A checkpoint is a directory under the prefix holding checkpoint files ('' = the prefix itself)."""
    return posixpath.dirname(path)
