"""Which files a restore drill restores, and what its timing says about a full restore.

A drill restores into scratch space every week; restoring whole snapshots of model weights each
time would cost a full copy of them. The sample still proves that every source restores: each
source's smallest file goes in first (a session store's only file is its export), then files in
an order drawn from the snapshot id until the byte budget is spent, so each new snapshot samples
different files. The sample's restore time, scaled by bytes, estimates the full restore's RTO.
"""

from __future__ import annotations

import hashlib

from tasks.backup_manifest import FileEntry
from tasks.restore_engine import select_files

MIB = 1024 * 1024


def choose_sample(files: list[FileEntry], sources: list[str], budget_bytes: int | None, seed: str) -> list[FileEntry]:
    """Files to restore, in manifest order; ``budget_bytes`` None means every file. The budget
    yields to coverage: a source whose smallest file is larger than what is left still gets it."""
    if budget_bytes is None:
        return list(files)
    chosen: set[str] = set()
    spent = 0
    for source in sources:
        members = select_files(files, source)
        if members:
            first = min(members, key=lambda f: (f.size, f.path))
            chosen.add(first.path)
            spent += first.size
    for f in sorted(files, key=lambda f: hashlib.sha256(f"{seed}\0{f.path}".encode()).digest()):
        if f.path not in chosen and spent + f.size <= budget_bytes:
            chosen.add(f.path)
            spent += f.size
    return [f for f in files if f.path in chosen]


def estimated_full_rto(seconds: float, restored_bytes: int, restored_files: int, total_bytes: int, total_files: int) -> float:
    """The sample's restore time scaled to the whole snapshot: by bytes, or by files when the
    sample held no bytes. Fixed costs (opening the repository, reading the index) are scaled
    too, so a small sample overstates the estimate rather than understating it."""
    if restored_bytes >= total_bytes and restored_files >= total_files:
        return seconds
    if restored_bytes > 0:
        return seconds * total_bytes / restored_bytes
    return seconds * total_files / max(restored_files, 1)
