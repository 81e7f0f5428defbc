"""Keeping a repository trustworthy and small: verify (structure, read, rolling scrub) and prune."""

from __future__ import annotations

import contextlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field

from tasks.backup_errors import CorruptObject, UnsafePath
from tasks.backup_manifest import Manifest, check_restorable
from tasks.backup_repository import ChunkLocation, PackWriter, Repository, store_errors
from tasks.backup_retention import RetentionPolicy, apply_retention


@dataclass
class BadChunk:
    chunk: str
    pack: str
    error: str
    files: list[str] = field(default_factory=list)  # "<snapshot short id>:<path>"


@dataclass
class VerifyReport:
    snapshots: int = 0
    packs: int = 0
    chunks_indexed: int = 0
    packs_read: int = 0
    chunks_read: int = 0
    bytes_read: int = 0
    scrub_slice: str = ""
    problems: list[str] = field(default_factory=list)
    bad_chunks: list[BadChunk] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.bad_chunks


def scrub_slice(pack_ids: list[str], run: int, runs: int) -> list[str]:
    """The packs scrub run number ``run`` reads: every pack falls in exactly one of ``runs`` slices."""
    runs = max(1, runs)
    return [p for p in pack_ids if int(p[:16], 16) % runs == run % runs]


def _read_scrub_state(repo: Repository) -> int:
    with store_errors("scrub/state.json"):
        try:
            return int(json.loads(repo.fs.cat_file(repo.p("scrub", "state.json"))).get("next_run", 0))
        except (FileNotFoundError, ValueError, TypeError):
            return 0


def verify_repository(repo: Repository, read_fraction: float = 0.0, scrub_runs: int = 0, seed: int | None = None) -> VerifyReport:
    """Check structure always; read and hash a random fraction of packs plus this run's scrub slice."""
    report = VerifyReport()
    repo.load_index()
    sizes = repo.pack_sizes()
    report.packs, report.chunks_indexed = len(repo.indexed_packs), len(repo.index)
    manifests: list[tuple[str, Manifest]] = []
    for sid in repo.snapshot_ids():
        try:
            manifest = repo.load_snapshot(sid)
            check_restorable(manifest)
            manifests.append((sid, manifest))
        except (CorruptObject, UnsafePath) as exc:
            report.problems.append(str(exc))
    report.snapshots = len(manifests)
    for sid, manifest in manifests:
        missing = sorted(manifest.referenced_chunks - repo.index.keys())
        if missing:
            report.problems.append(f"snapshot {sid[:16]}: {len(missing)} chunks missing from the index, e.g. {missing[0]}")
    for pack_id, entries in repo.pack_entries.items():
        end = max((e[1] + e[2] for e in entries), default=0) + 12
        if pack_id not in sizes:
            report.problems.append(f"pack {pack_id} is indexed but missing")
        elif sizes[pack_id] < end:
            report.problems.append(f"pack {pack_id} is {sizes[pack_id]} bytes, shorter than its index says ({end})")

    to_read = set()
    packs = sorted(p for p in repo.pack_entries if p in sizes)
    if read_fraction > 0 and packs:
        rng = random.Random(seed)
        to_read |= set(rng.sample(packs, max(1, round(len(packs) * min(read_fraction, 1.0)))))
    if scrub_runs > 0:
        run = _read_scrub_state(repo)
        to_read |= set(scrub_slice(packs, run, scrub_runs))
        report.scrub_slice = f"{run % scrub_runs + 1}/{scrub_runs}"
        with store_errors("scrub/state.json"):
            repo.write(repo.p("scrub", "state.json"), json.dumps({"next_run": run + 1, "runs": scrub_runs}).encode())

    bad: dict[str, BadChunk] = {}
    for pack_id in sorted(to_read):
        data = repo.read_pack(pack_id)
        report.packs_read += 1
        report.bytes_read += len(data)
        for cid, off, length, raw, codec in repo.pack_entries[pack_id]:
            report.chunks_read += 1
            try:
                repo.decode_chunk(cid, ChunkLocation(pack_id, off, length, raw, codec), memoryview(data)[off: off + length])
            except CorruptObject as exc:
                bad[cid] = BadChunk(cid, pack_id, str(exc))
    if bad:
        for sid, manifest in manifests:
            for entry in manifest.files:
                for cid in set(entry.chunks) & bad.keys():
                    bad[cid].files.append(f"{sid[:16]}:{entry.path}")
        report.bad_chunks = sorted(bad.values(), key=lambda b: b.chunk)
    return report


@dataclass
class PrunePlan:
    keep: dict[str, list[str]]
    forget: list[str]
    delete_packs: list[str]
    repack_packs: list[str]
    bytes_freed: int = 0
    bytes_repacked: int = 0
    dry_run: bool = True
    expired_locks_removed: int = 0


def plan_prune(repo: Repository, policy: RetentionPolicy, repack_threshold: float = 0.5) -> tuple[PrunePlan, dict[str, Manifest]]:
    """Which snapshots go and which packs are deleted or repacked; writes nothing."""
    snaps = repo.snapshots()
    keep = apply_retention([(sid, m.time) for sid, m in snaps], policy)
    kept = {sid: m for sid, m in snaps if sid in keep}
    forget = [sid for sid, _ in snaps if sid not in keep]
    referenced = set().union(*(m.referenced_chunks for m in kept.values())) if kept else set()
    delete, repack = [], []
    freed = repacked = 0
    sizes = repo.pack_sizes()
    for pack_id in sorted(set(sizes) | set(repo.pack_entries)):
        entries = repo.pack_entries.get(pack_id)
        if entries is None:  # never indexed: a torn pack (complete ones were adopted before planning)
            delete.append(pack_id)
            freed += sizes.get(pack_id, 0)
            continue
        total = sum(e[2] for e in entries) or 1
        used = sum(e[2] for e in entries if e[0] in referenced)
        if used == 0:
            delete.append(pack_id)
            freed += sizes.get(pack_id, total)
        elif (total - used) / total > repack_threshold:
            repack.append(pack_id)
            freed += total - used
            repacked += used
    return PrunePlan(keep, forget, delete, repack, freed, repacked), kept


def execute_prune(repo: Repository, plan: PrunePlan, kept: dict[str, Manifest],
                  still_locked: Callable[[], None] = lambda: None) -> PrunePlan:
    """Apply a plan: manifests, then repacked copies and a consolidated index, then old index files and packs.
    ``still_locked`` raises if the prune's lease lapsed: a backup may have started since the plan
    was made and deduplicated against packs it would delete, so nothing more is removed."""
    plan.dry_run = False
    still_locked()
    for sid in plan.forget:
        with store_errors(f"snapshot {sid}"), contextlib.suppress(FileNotFoundError):
            repo.fs.rm_file(repo.snapshot_path(sid))
    referenced = set().union(*(m.referenced_chunks for m in kept.values())) if kept else set()
    writer = PackWriter(repo, dedupe_against_index=False)
    gone = set(plan.delete_packs) | set(plan.repack_packs)
    for pack_id in plan.repack_packs:
        data = repo.read_pack(pack_id)
        for cid, off, length, raw, codec in repo.pack_entries[pack_id]:
            if cid in referenced:
                loc = ChunkLocation(pack_id, off, length, raw, codec)
                writer.add(cid, repo.decode_chunk(cid, loc, memoryview(data)[off: off + length]))
    old_index_files = list(repo.index_files)
    writer.flush()  # new packs + their index
    consolidated = {p: e for p, e in repo.pack_entries.items() if p not in gone}
    new_index = repo.write_index(consolidated)
    keep_files = {repo.index_path(new_index)} if new_index else set()
    still_locked()
    for path in old_index_files:
        if path not in keep_files:
            with store_errors(path), contextlib.suppress(FileNotFoundError):
                repo.fs.rm_file(path)
    # index files written by the writer for the repacked packs are covered by `consolidated` too
    for path in repo.list_dir("index"):
        if path not in keep_files and path not in old_index_files:
            with store_errors(path), contextlib.suppress(FileNotFoundError):
                repo.fs.rm_file(path)
    still_locked()
    for pack_id in sorted(gone):
        with store_errors(f"pack {pack_id}"), contextlib.suppress(FileNotFoundError):
            repo.fs.rm_file(repo.pack_path(pack_id))
    return plan


def affected_by(manifests: dict[str, Manifest], chunks: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for sid, m in manifests.items():
        for f in m.files:
            if chunks & set(f.chunks):
                out[sid].append(f.path)
    return dict(out)
