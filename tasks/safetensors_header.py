"""Parse and validate a safetensors header the way the reference loader does, reading only the header.

Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON ``{name: {dtype, shape,
data_offsets: [start, end]}, "__metadata__": {str: str}}``, then the data; offsets are relative
to the data start. Checks match huggingface/safetensors ``SafeTensors::read_metadata`` and
``Metadata::validate``, plus duplicate tensor names (which serde silently collapses). Where
Python's json is laxer than the reference's serde_json (nesting past 127 levels, a lone surrogate
escape, a repeated dtype/shape/data_offsets field), serde's refusal is the finding.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from tasks.checkpoint_findings import Finding, FindingKind, finding
from tasks.checkpoint_source import ByteSource

MAX_HEADER_SIZE = 100_000_000
MAX_NESTING = 127  # serde_json's recursion limit (128) refuses deeper headers: the reference loader cannot read them
USIZE_MAX = 2**64 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
_ENTRY_FIELDS = ("dtype", "shape", "data_offsets")

# Bits per element, as in safetensors' Dtype::bitsize.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "F64": 64, "I64": 64, "U64": 64, "C64": 64,
}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute file offset
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class SafetensorsHeader:
    header_len: int
    tensors: list[TensorEntry] = field(default_factory=list)  # in file order
    metadata: dict[str, str] | None = None

    @property
    def data_start(self) -> int:
        return 8 + self.header_len


class _Pairs(list):
    """A JSON object kept as its (key, value) pairs, so duplicate keys stay visible."""


def _pairs_keep_duplicates(pairs: list[tuple[str, object]]) -> _Pairs:
    return _Pairs(pairs)


def read_safetensors_header(source: ByteSource, file: str) -> tuple[SafetensorsHeader | None, list[Finding]]:
    """The parsed header (None when it cannot be used) and every finding about it."""
    size = source.size
    if size < 8:
        return None, [finding(FindingKind.header_too_small, file, f"file is {size} bytes; the length prefix needs 8", offset=0)]
    n = int.from_bytes(bytes(source.read_at(0, 8)), "little")
    if n > MAX_HEADER_SIZE:
        return None, [finding(FindingKind.header_too_large, file, f"header length {n} > limit {MAX_HEADER_SIZE}", offset=0)]
    if n + 8 > size:
        return None, [finding(FindingKind.header_length_past_eof, file, f"header of {n} bytes ends past the file's {size} bytes", offset=0)]
    raw = bytes(source.read_at(8, n))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [finding(FindingKind.header_not_utf8, file, f"header is not UTF-8: {exc.reason}", offset=8 + exc.start)]
    if not text.startswith("{"):
        return None, [finding(FindingKind.header_bad_start, file, f"header starts with {text[:1]!r}, not '{{'", offset=8)]
    try:
        parsed = json.loads(text, object_pairs_hook=_pairs_keep_duplicates)
    except json.JSONDecodeError as exc:
        return None, [finding(FindingKind.header_invalid_json, file, f"header JSON: {exc.msg} at char {exc.pos}", offset=8 + exc.pos)]
    except RecursionError:
        return None, [finding(FindingKind.header_invalid_json, file, "header does not parse: nested too deep", offset=8)]
    depth, lone_surrogate = json_shape(parsed)
    if depth > MAX_NESTING:
        return None, [finding(FindingKind.header_invalid_json, file, f"header nests {depth} levels deep; the reference loader's JSON parser stops at {MAX_NESTING + 1}", offset=8)]
    if lone_surrogate:
        return None, [finding(FindingKind.header_invalid_json, file, "header holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which the reference loader's JSON parser refuses", offset=8)]
    return _validate(parsed, n, size, file)  # valid JSON starting with '{' is an object: _Pairs


def json_shape(value: object) -> tuple[int, bool]:
    """How deeply objects and arrays nest (a bare object is 1), and whether a string holds a lone
    surrogate (Python's json keeps an unpaired \\udXXX escape; serde_json refuses it): one walk,
    without recursion."""
    deepest, lone_surrogate, todo = 0, False, [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, str):
            lone_surrogate = lone_surrogate or bool(_SURROGATE.search(node))
        elif isinstance(node, _Pairs):  # a JSON object, kept as (key, value) pairs
            deepest = max(deepest, depth)
            todo.extend(item for key, child in node for item in ((key, depth), (child, depth + 1)))
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            todo.extend((child, depth + 1) for child in node)
    return deepest, lone_surrogate


def _validate(pairs: _Pairs, n: int, size: int, file: str) -> tuple[SafetensorsHeader | None, list[Finding]]:
    findings: list[Finding] = []
    header = SafetensorsHeader(header_len=n)
    data_start = 8 + n
    seen: set[str] = set()
    usable = True
    raw_entries: list[tuple[str, str, tuple[int, ...], int, int]] = []
    for name, info in pairs:
        if name in seen:
            findings.append(finding(FindingKind.duplicate_tensor, file, f"{name!r} appears more than once in the header", tensor=name, offset=8))
            usable = False
            continue
        seen.add(name)
        if name == "__metadata__":
            if not isinstance(info, _Pairs) or not all(isinstance(v, str) for _, v in info):
                findings.append(finding(FindingKind.metadata_not_strings, file, "__metadata__ must map strings to strings", offset=8))
                usable = False
            else:
                header.metadata = dict(info)
            continue
        entry = dict(info) if isinstance(info, _Pairs) else None
        repeated = [f for f in _ENTRY_FIELDS if entry is not None and sum(k == f for k, _ in info) > 1]
        if repeated:  # serde refuses a duplicate field where Python's json keeps the last
            findings.append(finding(FindingKind.tensor_invalid_info, file, f"field {repeated[0]!r} appears more than once in the entry", tensor=name, offset=8))
            usable = False
            continue
        dtype, shape, offsets = (entry or {}).get("dtype"), (entry or {}).get("shape"), (entry or {}).get("data_offsets")
        if not (
            isinstance(dtype, str)
            and isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
            and isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)
        ):
            findings.append(finding(FindingKind.tensor_invalid_info, file, f"entry needs dtype (str), shape (non-negative ints), data_offsets ([start, end]); got {info!r}"[:300], tensor=name, offset=8))
            usable = False
            continue
        if dtype not in DTYPE_BITS:
            findings.append(finding(FindingKind.unknown_dtype, file, f"dtype {dtype!r} is not a safetensors dtype", tensor=name, offset=8))
            usable = False
            continue
        if any(o > USIZE_MAX for o in offsets):
            findings.append(finding(FindingKind.validation_overflow, file, f"data_offsets {offsets} overflow 64 bits", tensor=name, offset=8))
            usable = False
            continue
        raw_entries.append((name, dtype, tuple(shape), offsets[0], offsets[1]))

    raw_entries.sort(key=lambda e: (e[3], e[4]))
    last_end = 0
    for name, dtype, shape, start, end in raw_entries:
        abs_start = data_start + start
        if end < start:
            findings.append(finding(FindingKind.offsets_inverted, file, f"data_offsets [{start}, {end}] end before they start", tensor=name, offset=abs_start))
            usable = False
            continue
        if start > last_end:
            findings.append(finding(FindingKind.offsets_gap, file, f"{start - last_end} bytes between data offset {last_end} and this tensor's start {start}", tensor=name, offset=data_start + last_end))
        elif start < last_end:
            findings.append(finding(FindingKind.offsets_overlap, file, f"starts at data offset {start}, inside the previous tensor (ends at {last_end})", tensor=name, offset=abs_start))
        last_end = max(last_end, end)
        nelements = 1
        overflow = False
        for dim in shape:
            nelements *= dim
            if nelements > USIZE_MAX:
                overflow = True
                break
        nbits = nelements * DTYPE_BITS[dtype]
        if overflow or nbits > USIZE_MAX:
            findings.append(finding(FindingKind.validation_overflow, file, f"shape {list(shape)} x {dtype} overflows 64 bits", tensor=name, offset=abs_start))
            usable = False
            continue
        if nbits % 8:
            findings.append(finding(FindingKind.tensor_misaligned_bits, file, f"{nelements} x {DTYPE_BITS[dtype]} bits is not a whole number of bytes", tensor=name, offset=abs_start))
            usable = False
            continue
        if end - start != nbits // 8:
            findings.append(finding(FindingKind.tensor_size_mismatch, file, f"{end - start} bytes for shape {list(shape)} {dtype}, which needs {nbits // 8}", tensor=name, offset=abs_start))
        header.tensors.append(TensorEntry(name, dtype, shape, abs_start, data_start + end))

    if not usable:  # a rejected entry leaves the byte accounting unknown: no missing/trailing verdict
        return None, findings
    expected = data_start + last_end
    if expected > size:
        findings.append(finding(FindingKind.missing_bytes, file, f"tensors end at byte {expected}; the file has only {size} ({expected - size} missing)", offset=size))
    elif expected < size:
        findings.append(finding(FindingKind.trailing_bytes, file, f"{size - expected} bytes after the last tensor (which ends at {expected})", offset=expected))
    return (header if usable else None), findings
