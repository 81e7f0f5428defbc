"""Checkpoint verification speed: this project vs b3sum and sha256sum, side by side in one run.

    .venv/bin/python bench/checkpoints/run.py [--gib 2] [--repeat 3]

Generates a sharded safetensors checkpoint (default 2 GiB: 4 shards of 16 F32 tensors, with its
model.safetensors.index.json) in a temporary directory, reads it once so every tool reads from
the page cache, then times, best of --repeat:
  - project: the full verification the flow's task runs (structure of every file, the index
    cross-check, a BLAKE3 digest per tensor and per file, the manifest), on all cores;
  - b3sum --num-threads <cores> over the same files;
  - sha256sum over the same files.
Prints GB/s for each and the ratios; the last line is
`RESULT checkpoints vs_b3sum=<project/b3sum> vs_sha256sum=<project/sha256sum>`.
The directory is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import fsspec  # noqa: E402
import numpy as np  # noqa: E402

from tasks.checkpoint_manifest import HashAlgorithm  # noqa: E402
from tasks.checkpoint_verifier import (  # noqa: E402
    VerifySettings,
    build_manifest,
    cross_check_indexes,
    list_checkpoint_files,
    verify_files,
)

TENSORS_PER_SHARD = 16


def ensure_tools() -> None:
    missing = [spec for spec, cmd in (("b3sum", "b3sum"), ("coreutils:sha256sum", "sha256sum")) if not shutil.which(cmd)]
    if missing:
        subprocess.run(["bash", str(ROOT / "deployments" / "system_packages.sh"), *missing], check=True)


def generate(directory: Path, total_bytes: int, shards: int = 4) -> list[Path]:
    """Shards written tensor by tensor (never a whole shard in memory), transformers-style names."""
    per_tensor = total_bytes // (shards * TENSORS_PER_SHARD)
    elements = per_tensor // 4
    rng = np.random.default_rng(0)
    block = rng.standard_normal(elements, dtype=np.float32)
    weight_map, total, paths = {}, 0, []
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for t in range(TENSORS_PER_SHARD):
            tname = f"model.layers.{s * TENSORS_PER_SHARD + t}.mlp.weight"
            header[tname] = {"dtype": "F32", "shape": [elements], "data_offsets": [offset, offset + elements * 4]}
            offset += elements * 4
            weight_map[tname] = name
        total += offset
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * ((-len(raw)) % 8)
        path = directory / name
        with open(path, "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little") + raw)
            for t in range(TENSORS_PER_SHARD):
                block[0] = s * TENSORS_PER_SHARD + t  # every tensor different
                fh.write(block.tobytes())
        paths.append(path)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return paths


def project_verify(directory: Path) -> None:
    fs = fsspec.filesystem("file")
    files = list_checkpoint_files(fs, str(directory))
    results = verify_files(fs, str(directory), files, VerifySettings(hash_algorithm=HashAlgorithm.blake3))
    findings = [f for r in results for f in r.findings] + cross_check_indexes(results)
    manifest = build_manifest(results, HashAlgorithm.blake3)
    if findings or len(manifest.files) != len(files):
        raise SystemExit(f"the generated checkpoint should verify clean: {findings[:3]}")


def best_of(repeat: int, fn) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ensure_tools()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="llmr-bench-ckpt-") as tmp:
        directory = Path(tmp)
        t0 = time.perf_counter()
        shards = generate(directory, int(args.gib * 2**30))
        files = [str(p) for p in sorted(directory.iterdir())]
        size = sum(os.path.getsize(f) for f in files)
        print(f"generated {len(shards)} shards + index, {size / 2**30:.2f} GiB in {time.perf_counter() - t0:.1f} s; {cores} cores")
        subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)  # into the page cache

        b3 = lambda: subprocess.run(["b3sum", "--num-threads", str(cores), *files], stdout=subprocess.DEVNULL, check=True)  # noqa: E731
        sha = lambda: subprocess.run(["sha256sum", *files], stdout=subprocess.DEVNULL, check=True)  # noqa: E731
        timings = {}
        for label, fn in (("project", lambda: project_verify(directory)), ("b3sum", b3), ("sha256sum", sha)):
            timings[label] = best_of(args.repeat, fn)
        print(f"{'tool':<12}{'seconds':>10}{'GB/s':>10}")
        for label, seconds in timings.items():
            print(f"{label:<12}{seconds:>10.3f}{size / seconds / 1e9:>10.2f}")
        vs_b3 = timings["project"] / timings["b3sum"]
        vs_sha = timings["project"] / timings["sha256sum"]
        print(f"project_time/b3sum_time = {vs_b3:.3f} (target <= 1.25); project_time/sha256sum_time = {vs_sha:.3f} (target < 1)")
    print(f"RESULT checkpoints vs_b3sum={vs_b3:.3f} vs_sha256sum={vs_sha:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
