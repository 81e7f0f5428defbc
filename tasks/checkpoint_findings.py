"""The named finding kinds of checkpoint verification: what is wrong, where (file, tensor, byte).

Every problem the verifier can see is one ``FindingKind``; a finding never carries a traceback.
The kinds follow the safetensors reference loader's errors (``HeaderTooSmall``, ``HeaderTooLarge``,
``InvalidHeaderLength``, ``InvalidHeader``, ``InvalidHeaderStart``, ``InvalidHeaderDeserialization``,
``InvalidOffset``, ``TensorInvalidInfo``, ``ValidationOverflow``, ``MetadataIncompleteBuffer``)
split finely enough that each names one cause.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel


class Severity(str, Enum):
    warning = "warning"      # worth a look; the checkpoint still loads (all-zero tensor, NaN ...)
    corrupt = "corrupt"      # will not load, or is not the bytes that were recorded
    dangerous = "dangerous"  # loading it could run code (pickle imports)

    @property
    def rank(self) -> int:
        return {"warning": 1, "corrupt": 2, "dangerous": 3}[self.value]


class FindingKind(str, Enum):
    # --- location / file access
    empty_prefix = "empty_prefix"
    no_checkpoint_found = "no_checkpoint_found"
    file_unreadable = "file_unreadable"              # could not be opened or read (storage, permissions)
    verifier_error = "verifier_error"                # a parser raised what it did not foresee: unverified
    # --- safetensors (one file)
    header_too_small = "header_too_small"            # file shorter than the 8-byte length prefix
    header_too_large = "header_too_large"            # header length > 100,000,000 bytes
    header_length_past_eof = "header_length_past_eof"  # 8 + header length > file size
    header_not_utf8 = "header_not_utf8"
    header_bad_start = "header_bad_start"            # header does not begin with '{'
    header_invalid_json = "header_invalid_json"
    duplicate_tensor = "duplicate_tensor"
    metadata_not_strings = "metadata_not_strings"    # __metadata__ is not a str -> str map
    tensor_invalid_info = "tensor_invalid_info"      # dtype/shape/data_offsets missing or mistyped
    unknown_dtype = "unknown_dtype"
    offsets_inverted = "offsets_inverted"            # end < start
    offsets_gap = "offsets_gap"                      # bytes between two tensors that no tensor owns
    offsets_overlap = "offsets_overlap"              # two tensors share bytes
    tensor_size_mismatch = "tensor_size_mismatch"    # end - start != prod(shape) * dtype size
    tensor_misaligned_bits = "tensor_misaligned_bits"  # sub-byte dtype whose bits do not fill bytes
    validation_overflow = "validation_overflow"      # shape or byte count overflows 64 bits
    missing_bytes = "missing_bytes"                  # data ends before the last tensor (truncated)
    trailing_bytes = "trailing_bytes"                # bytes after the last tensor
    # --- sharded safetensors (index + shards)
    index_invalid_json = "index_invalid_json"
    index_invalid = "index_invalid"                  # no weight_map / wrong types
    shard_missing = "shard_missing"
    shard_unreadable = "shard_unreadable"            # shard exists but its header is broken
    shard_missing_tensor = "shard_missing_tensor"    # index assigns a tensor the shard lacks
    shard_unlisted_tensor = "shard_unlisted_tensor"  # shard holds a tensor the index does not assign it
    stray_shard = "stray_shard"                      # a .safetensors file the index does not name
    total_size_mismatch = "total_size_mismatch"
    # --- GGUF
    gguf_bad_magic = "gguf_bad_magic"
    gguf_bad_version = "gguf_bad_version"
    gguf_truncated = "gguf_truncated"
    gguf_implausible_count = "gguf_implausible_count"
    gguf_invalid_metadata = "gguf_invalid_metadata"
    gguf_unknown_tensor_type = "gguf_unknown_tensor_type"
    gguf_offset_misaligned = "gguf_offset_misaligned"
    gguf_offset_out_of_bounds = "gguf_offset_out_of_bounds"
    # --- pickle
    pickle_dangerous_global = "pickle_dangerous_global"  # os.system, builtins.eval, ...
    pickle_unallowed_global = "pickle_unallowed_global"  # an import not on the tensor-rebuild allowlist
    pickle_invalid = "pickle_invalid"
    zip_invalid = "zip_invalid"
    # --- tensor statistics
    tensor_nan = "tensor_nan"
    tensor_inf = "tensor_inf"
    tensor_all_zero = "tensor_all_zero"
    # --- integrity manifest
    manifest_invalid = "manifest_invalid"
    manifest_file_missing = "manifest_file_missing"    # in the manifest, not in the checkpoint
    manifest_file_extra = "manifest_file_extra"        # in the checkpoint, not in the manifest
    manifest_file_differs = "manifest_file_differs"
    manifest_tensor_differs = "manifest_tensor_differs"
    # --- replicas
    replica_file_missing = "replica_file_missing"      # in the primary, not in the replica
    replica_file_extra = "replica_file_extra"          # in the replica, not in the primary
    replica_file_differs = "replica_file_differs"
    replica_tensor_differs = "replica_tensor_differs"


WARNINGS = frozenset({FindingKind.tensor_nan, FindingKind.tensor_inf, FindingKind.tensor_all_zero})
DANGEROUS = frozenset({FindingKind.pickle_dangerous_global, FindingKind.pickle_unallowed_global})


def severity_of(kind: FindingKind) -> Severity:
    if kind in DANGEROUS:
        return Severity.dangerous
    if kind in WARNINGS:
        return Severity.warning
    return Severity.corrupt


class Finding(BaseModel):
    kind: FindingKind
    file: str = ""
    tensor: str | None = None
    offset: int | None = None   # absolute byte offset in the file, when one applies
    detail: str = ""

    @property
    def severity(self) -> Severity:
        return severity_of(self.kind)

    def __str__(self) -> str:
        where = self.file + (f" [{self.tensor}]" if self.tensor else "") + (f" @{self.offset}" if self.offset is not None else "")
        return f"{self.kind.value}: {where}: {self.detail}"


def finding(kind: FindingKind, file: str, detail: str, *, tensor: str | None = None, offset: int | None = None) -> Finding:
    return Finding(kind=kind, file=file, tensor=tensor, offset=offset, detail=detail[:500])
