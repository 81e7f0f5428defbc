"""Cross-check ``model.safetensors.index.json`` against the shards' own headers.

transformers' sharded loader trusts the index: it never checks that every shard exists, that a
shard holds what the index says, or that ``metadata.total_size`` adds up, and only warns about
missing weights. Here each of those is a named finding.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tasks.checkpoint_findings import Finding, FindingKind, finding


class TensorSpan(Protocol):
    name: str
    start: int
    length: int

INDEX_SUFFIX = ".safetensors.index.json"


@dataclass
class ShardIndex:
    weight_map: dict[str, str]  # tensor -> shard file name (relative to the index's directory)
    total_size: int | None

    def shards(self) -> set[str]:
        return set(self.weight_map.values())

    def assigned(self, shard: str) -> set[str]:
        return {t for t, s in self.weight_map.items() if s == shard}


def parse_index(raw: bytes, file: str) -> tuple[ShardIndex | None, list[Finding]]:
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, [finding(FindingKind.index_invalid_json, file, f"not JSON: {exc}")]
    except RecursionError:  # transformers' json.load fails the same way
        return None, [finding(FindingKind.index_invalid_json, file, "does not parse: nested too deep")]
    if not isinstance(doc, dict) or not isinstance(doc.get("weight_map"), dict):
        return None, [finding(FindingKind.index_invalid, file, "needs an object with a 'weight_map' object")]
    wm = doc["weight_map"]
    bad = [k for k, v in wm.items() if not isinstance(v, str) or not v or v.startswith("/") or ".." in v.split("/")]
    if bad:
        return None, [finding(FindingKind.index_invalid, file, f"weight_map values must be shard file names; bad for {bad[:5]}")]
    meta = doc.get("metadata") or {}
    total = meta.get("total_size") if isinstance(meta, dict) else None
    if total is not None:
        try:
            total = int(total)
        except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity
            return None, [finding(FindingKind.index_invalid, file, f"metadata.total_size {total!r} is not an integer")]
    return ShardIndex(weight_map=dict(wm), total_size=total), []


def check_index(
    index: ShardIndex,
    index_file: str,
    headers: dict[str, Sequence[TensorSpan] | None],
    safetensors_in_dir: set[str],
) -> list[Finding]:
    """``headers``: shard file path (same directory as the index) -> its header's tensors, None if unusable.

    ``safetensors_in_dir``: every .safetensors file beside the index, to find stray shards.
    """
    directory = posixpath.dirname(index_file)
    findings: list[Finding] = []
    total = 0
    total_known = True
    for shard in sorted(index.shards()):
        path = posixpath.join(directory, shard) if directory else shard
        if path not in safetensors_in_dir and path not in headers:
            n = len(index.assigned(shard))
            findings.append(finding(FindingKind.shard_missing, path, f"the index assigns {n} tensors to this shard, which does not exist"))
            total_known = False
            continue
        header = headers.get(path)
        if header is None:
            findings.append(finding(FindingKind.shard_unreadable, path, "its header is broken (see its own findings), so its tensors cannot be checked against the index"))
            total_known = False
            continue
        have = {t.name for t in header}
        want = index.assigned(shard)
        for name in sorted(want - have):
            findings.append(finding(FindingKind.shard_missing_tensor, path, "the index assigns this tensor to the shard, but its header lacks it", tensor=name))
        for name in sorted(have - want):
            elsewhere = index.weight_map.get(name)
            why = f"the index assigns it to {elsewhere}" if elsewhere else "the index does not list it"
            findings.append(finding(FindingKind.shard_unlisted_tensor, path, f"shard holds this tensor but {why}", tensor=name, offset=next(t.start for t in header if t.name == name)))
        total += sum(t.length for t in header if t.name in want)  # what the index claims, as the shard stores it
    named = {posixpath.join(directory, s) if directory else s for s in index.shards()}
    for stray in sorted(safetensors_in_dir - named):
        findings.append(finding(FindingKind.stray_shard, stray, f"a .safetensors file beside {posixpath.basename(index_file)} that the index does not name"))
    if index.total_size is not None and total_known and total != index.total_size:
        findings.append(finding(FindingKind.total_size_mismatch, index_file, f"metadata.total_size is {index.total_size}; the shards' tensors hold {total} bytes"))
    return findings
