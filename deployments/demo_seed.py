"""Minimal demo data, so every deployment `make demo` runs has something real to work on.

Written with the project's own APIs (StorageTarget blocks, the prompt registry), nothing
downloaded, and idempotent: a second `make demo` finds everything in place and writes nothing
(identical bytes are not rewritten, so replication and backup see no change either).

- a few small objects under ``demo/`` in the region-a bucket (what `replicate` copies and
  `backup` snapshots);
- a tiny safetensors checkpoint under ``checkpoints/demo-tiny/`` in region-a (what
  `verify-checkpoint` checks, and compares with region-b's copy);
- prompt ``capitals`` v1 labelled ``production`` in the registry (the baseline the
  prompt-regression runs compare the demo's candidate with);
- the StorageTarget block ``demo-restore-scratch``: a local directory under the state dir that
  `restore` writes into, never over live data.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deployments.settings import PlatformSettings

DEMO_PREFIX = "demo"
CHECKPOINT_PREFIX = "checkpoints/demo-tiny"
SCRATCH_BLOCK = "demo-restore-scratch"
PROMPT = "capitals"
PROMPT_PARAMS: dict[str, Any] = {"temperature": 0, "max_tokens": 12}
BASELINE_TEMPLATE = "{{question}}"
CANDIDATE_TEMPLATE = "Answer briefly. {{question}}"
DEMO_AUTHOR = "make-demo"

DEMO_OBJECTS: dict[str, bytes] = {
    f"{DEMO_PREFIX}/README.txt": b"Demo data written by `make demo`: replicated to region-b, backed up, restored.\n",
    f"{DEMO_PREFIX}/datasets/capitals.jsonl": b"".join(
        json.dumps({"question": f"What is the capital of {c}?", "answer": a}).encode() + b"\n"
        for c, a in [("Japan", "Tokyo"), ("Germany", "Berlin"), ("France", "Paris"), ("Italy", "Rome")]
    ),
    f"{DEMO_PREFIX}/configs/serving.json": json.dumps(
        {"model": "smollm2-135m-instruct", "max_tokens": 64, "regions": ["region-a", "region-b"]}, indent=2
    ).encode(),
}

# safetensors dtype names of the numpy dtypes the tiny checkpoint uses.
_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}


def tiny_tensors() -> dict[str, np.ndarray]:
    """A few deterministic tensors (same bytes on every run, so the integrity manifest holds)."""
    return {
        "embed.weight": (np.arange(32, dtype=np.float32).reshape(8, 4) / 7.0).astype(np.float32),
        "layers.0.attn.weight": (np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)).astype(np.float16),
        "layers.0.norm.weight": np.ones(4, dtype=np.float32),
        "position_ids": np.arange(8, dtype=np.int64),
    }


def safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors format: u64 little-endian header length, JSON header, then the tensors'
    little-endian bytes back to back in header order (no gaps, nothing trailing)."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset, blobs = 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_DTYPES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the reference writer pads the header to 8 bytes with spaces
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def demo_checkpoint() -> dict[str, bytes]:
    """Key (below the region-a root) -> bytes of the demo checkpoint."""
    return {f"{CHECKPOINT_PREFIX}/model.safetensors": safetensors_bytes(tiny_tensors(), {"format": "pt"})}


@dataclass
class SeedReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"demo data: {len(self.written)} written, {len(self.unchanged)} already in place"
                + (f"; {'; '.join(self.notes)}" if self.notes else ""))


def put_if_changed(target: Any, objects: dict[str, bytes], report: SeedReport) -> None:
    """Write each object unless the target already holds exactly these bytes."""
    fs = target.filesystem()
    for key, data in objects.items():
        path = target.path(key)
        try:
            same = fs.cat_file(path) == data
        except FileNotFoundError:
            same = False
        if same:
            report.unchanged.append(key)
        else:
            if target.protocol == "file":  # object stores have no directories to create
                fs.makedirs(fs._parent(path), exist_ok=True)
            fs.pipe_file(path, data)
            report.written.append(key)


def seed_prompt(registry: Any, report: SeedReport) -> None:
    """`capitals` v1 labelled production, unless the prompt already exists (its labels then are
    whatever earlier runs made them, e.g. production on the promoted candidate)."""
    if registry.versions(PROMPT):
        report.unchanged.append(f"prompt {PROMPT} (labels {registry.labels(PROMPT)})")
        return
    v = registry.create_version(PROMPT, BASELINE_TEMPLATE, params=PROMPT_PARAMS, author=DEMO_AUTHOR,
                                message="baseline for the demo")
    registry.move_label(PROMPT, "production", v.version, actor=DEMO_AUTHOR, reason="demo baseline")
    report.written.append(f"prompt {PROMPT} v{v.version}@production")


def seed(settings: PlatformSettings) -> SeedReport:
    """Everything the demo's runs need, on the running platform (blocks saved by `stack-up`)."""
    from blocks import StorageTarget
    from tasks.prompt_regression import RegistryRef

    report = SeedReport()
    region_a = StorageTarget.load(settings.region_a.name)
    put_if_changed(region_a, {**DEMO_OBJECTS, **demo_checkpoint()}, report)
    seed_prompt(RegistryRef(storage_block=settings.region_a.name).open(), report)
    scratch = settings.state_dir / "demo" / "restore-scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    StorageTarget(url=scratch.resolve().as_uri()).save(SCRATCH_BLOCK, overwrite=True)
    report.notes.append(f"restore scratch: block {SCRATCH_BLOCK} -> {scratch}")
    return report
