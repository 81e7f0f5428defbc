"""Generated data sets for backup tests: random (incompressible) bytes, reproducible by seed."""

from __future__ import annotations

import os
import random
from pathlib import Path


def make_tree(root: Path, seed: int = 1, small: int = 60, large_sizes: tuple[int, ...] = (3 << 20, 5 << 20)) -> int:
    """Many small files and a few large ones under ``root``; returns the total bytes."""
    rng = random.Random(seed)
    total = 0
    for i in range(small):
        path = root / f"dir{i % 5}" / f"small-{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(0, 40_000))
        path.write_bytes(data)
        total += len(data)
    for i, size in enumerate(large_sizes):
        path = root / "large" / f"big-{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        total += size
    return total


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def change_one_percent(root: Path, total: int, seed: int = 2) -> int:
    """Overwrite one contiguous region of ~1 % of all bytes inside the first large file."""
    big = sorted((root / "large").iterdir())[0]
    data = bytearray(big.read_bytes())
    n = total // 100
    at = len(data) // 3
    data[at: at + n] = random.Random(seed).randbytes(n)
    big.write_bytes(bytes(data))
    os.utime(big, ns=(big.stat().st_mtime_ns + 10**9, big.stat().st_mtime_ns + 10**9))
    return n
