"""Validate a GGUF file's header: magic, version, counts, metadata, tensor names and offsets.

Layout (ggml/docs/gguf.md): magic ``GGUF``, u32 version (2 or 3; 1 used u32 counts), u64 tensor
count, u64 key-value count, the key-values, the tensor infos (name, n_dims, dims, ggml type, u64
offset relative to the aligned data section), padding to ``general.alignment`` (default 32), data.
Only the header is read (the SmolLM2 header is ~2 MB of vocabulary; its data is not touched).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tasks.checkpoint_findings import Finding, FindingKind, finding
from tasks.checkpoint_source import BufferedReader, ByteSource

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_STRING = 1 << 30
GGML_MAX_NAME = 64  # ggml.h: a tensor name and its NUL must fit 64 bytes
# value type -> struct format for the fixed-size scalars
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
# ggml type -> (elements per block, bytes per block)
GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}


@dataclass
class GGUFTensor:
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    start: int  # absolute file offset
    length: int | None  # None for an unknown ggml type


@dataclass
class GGUFHeader:
    version: int
    tensor_count: int
    kv_count: int
    alignment: int
    data_start: int
    metadata: dict[str, object] = field(default_factory=dict)  # scalars and strings only
    tensors: list[GGUFTensor] = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, kind: FindingKind, detail: str, offset: int):
        super().__init__(detail)
        self.kind, self.detail, self.offset = kind, detail, offset


def read_gguf_header(source: ByteSource, file: str) -> tuple[GGUFHeader | None, list[Finding]]:
    reader = BufferedReader(source)
    try:
        return _parse(reader, source.size, file)
    except EOFError as exc:
        return None, [finding(FindingKind.gguf_truncated, file, f"the header runs past the end of the {source.size}-byte file", offset=int(exc.args[0]) if exc.args else None)]
    except _Bad as bad:
        return None, [finding(bad.kind, file, bad.detail, offset=bad.offset)]


def _parse(r: BufferedReader, size: int, file: str) -> tuple[GGUFHeader, list[Finding]]:
    magic = r.read(4)
    if magic != MAGIC:
        raise _Bad(FindingKind.gguf_bad_magic, f"magic is {magic!r}, not {MAGIC!r}", 0)
    (version,) = struct.unpack("<I", r.read(4))
    if version not in (1, 2, 3):
        raise _Bad(FindingKind.gguf_bad_version, f"version {version}; known versions are 1, 2, 3", 4)
    count_fmt = "<I" if version == 1 else "<Q"
    count_size = struct.calcsize(count_fmt)
    (n_tensors,) = struct.unpack(count_fmt, r.read(count_size))
    (n_kv,) = struct.unpack(count_fmt, r.read(count_size))
    # Each KV needs >= 12 bytes and each tensor info >= 24: counts that cannot fit are corrupt.
    if n_kv * 12 + n_tensors * 24 > size:
        raise _Bad(FindingKind.gguf_implausible_count, f"{n_tensors} tensors and {n_kv} key-values cannot fit in {size} bytes", 8)

    def read_string() -> str:
        at = r.pos
        (length,) = struct.unpack(count_fmt, r.read(count_size))
        if length > MAX_STRING or at + length > size:
            raise _Bad(FindingKind.gguf_invalid_metadata, f"string length {length} at byte {at} runs past the file", at)
        raw = r.read(length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(FindingKind.gguf_invalid_metadata, f"string at byte {at} is not UTF-8", at) from None

    def read_value(vtype: int, at: int, depth: int = 0) -> object:
        if vtype in SCALARS:
            fmt = SCALARS[vtype]
            return struct.unpack(fmt, r.read(struct.calcsize(fmt)))[0]
        if vtype == STRING:
            return read_string()
        if vtype == ARRAY and depth == 0:
            (etype,) = struct.unpack("<I", r.read(4))
            (count,) = struct.unpack(count_fmt, r.read(count_size))
            if count > size:
                raise _Bad(FindingKind.gguf_invalid_metadata, f"array of {count} items at byte {at} cannot fit in the file", at)
            if etype in SCALARS:  # skip fixed-size arrays in one read
                r.read(count * struct.calcsize(SCALARS[etype]))
            else:
                for _ in range(count):
                    read_value(etype, r.pos, depth + 1)
            return f"<array of {count}>"
        raise _Bad(FindingKind.gguf_invalid_metadata, f"unknown value type {vtype} at byte {at}", at)

    header = GGUFHeader(version=version, tensor_count=n_tensors, kv_count=n_kv, alignment=DEFAULT_ALIGNMENT, data_start=0)
    for _ in range(n_kv):
        at = r.pos
        key = read_string()
        (vtype,) = struct.unpack("<I", r.read(4))
        value = read_value(vtype, at)
        header.metadata[key] = value
    alignment = header.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _Bad(FindingKind.gguf_invalid_metadata, f"general.alignment {alignment!r} is not a power of two", 0)
    header.alignment = alignment

    infos: list[tuple[str, tuple[int, ...], int, int, int]] = []
    for _ in range(n_tensors):
        at = r.pos
        name = read_string()
        (n_dims,) = struct.unpack("<I", r.read(4))
        if n_dims > 8:
            raise _Bad(FindingKind.gguf_invalid_metadata, f"tensor {name!r} has {n_dims} dimensions (max 8)", at)
        dims = struct.unpack(f"<{n_dims}Q", r.read(8 * n_dims))
        (gtype,) = struct.unpack("<I", r.read(4))
        (offset,) = struct.unpack("<Q", r.read(8))
        infos.append((name, dims, gtype, offset, at))
    data_start = -(-r.pos // alignment) * alignment
    header.data_start = data_start

    findings: list[Finding] = []
    data_len = size - data_start
    seen: set[str] = set()
    # llama.cpp's loader (gguf_init_from_file) wants each tensor exactly where the previous one's
    # data, padded to the alignment, ends: none out of order, overlapping or with a gap.
    expected: int | None = 0
    for name, dims, gtype, offset, at in infos:
        nelements = 1
        for d in dims:
            nelements *= d
        length = None
        if gtype in GGML_TYPES:
            block, nbytes = GGML_TYPES[gtype]
            length = -(-nelements // block) * nbytes
        else:
            findings.append(finding(FindingKind.gguf_unknown_tensor_type, file, f"ggml type {gtype} is unknown", tensor=name, offset=at))
        if len(name.encode()) >= GGML_MAX_NAME:
            findings.append(finding(FindingKind.gguf_invalid_metadata, file, f"tensor name is {len(name.encode())} bytes; llama.cpp "
                                    f"refuses names of {GGML_MAX_NAME} bytes or more (GGML_MAX_NAME)", tensor=name, offset=at))
        if name in seen:
            findings.append(finding(FindingKind.duplicate_tensor, file, f"tensor name {name!r} appears more than once; llama.cpp refuses the file", tensor=name, offset=at))
        seen.add(name)
        misplaced = False
        if offset % alignment:
            misplaced = True
            findings.append(finding(FindingKind.gguf_offset_misaligned, file, f"data offset {offset} is not a multiple of the alignment {alignment}", tensor=name, offset=data_start + offset))
        if offset + (length or 0) > data_len:
            misplaced = True
            findings.append(finding(FindingKind.gguf_offset_out_of_bounds, file, f"tensor bytes [{offset}, {offset + (length or 0)}) pass the data section's {data_len} bytes", tensor=name, offset=data_start + offset))
        if not misplaced and expected is not None:
            findings += _sequence_findings(name, offset, expected, file, data_start)
        if length is None:
            expected = None  # an unknown type's size is unknown: the running total stops there
        elif expected is not None:
            expected = max(expected, offset + -(-length // alignment) * alignment)
        header.tensors.append(GGUFTensor(name, dims, gtype, data_start + offset, length))
    return header, findings


def _sequence_findings(name: str, offset: int, expected: int, file: str, data_start: int) -> list[Finding]:
    """A tensor that does not start where the running padded total of the ones before it ends."""
    if offset > expected:
        detail = f"data offset {offset}, but the tensors before it end at {expected} (padded): {offset - expected} bytes no tensor owns"
        return [finding(FindingKind.offsets_gap, file, detail, tensor=name, offset=data_start + expected)]
    if offset < expected:
        detail = f"data offset {offset} is inside the tensors before it, which end at {expected} (padded): overlapping or out of order"
        return [finding(FindingKind.offsets_overlap, file, detail, tensor=name, offset=data_start + offset)]
    return []
