"""The MD5 chains of every copy in flight, hashed together, up to sixteen in one AVX-512 pass.

Verification hashes each copied byte with one or two MD5 chains (``tasks.twin_md5``), and one
chain cannot run faster than its steps' latency: ~575 MiB/s here, or ~880 MiB/s of chain-bytes for
a twin. The copies in flight at once are independent chains, so ``tasks._md5_lanes`` runs sixteen
of them in the lanes of AVX-512 registers (measured: 4.9 GiB of chain-bytes per CPU-second). A
pass costs the same with one lane busy as with sixteen, so bytes wait here until enough chains
have some (``min_lanes``), a chain holds ``high_water`` bytes, or someone needs a digest (flush).
Below three busy lanes a pass costs more than hashing each group alone (``compress2`` for a twin,
``compress1`` for a single chain, as fast as hashlib), so such rounds do that.

``LLMR_MD5_LANES=0`` in the environment switches them off (to compare, or on a CPU that slows
down under AVX-512). There is no thread of its own: the thread whose bytes tip a threshold, or that needs a digest,
hashes everyone's waiting bytes (the GIL is released while it does). Only immutable ``bytes`` are
kept to be hashed later; any other buffer is hashed before ``update`` returns.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tasks import twin_md5
from tasks.twin_md5 import BLOCK, TwinMD5

try:
    from tasks._md5_lanes import compress16, has_avx512
except ImportError:  # not compiled here: parts_and_whole_md5 uses TwinMD5 or hashlib
    compress16, has_avx512 = None, None

LANES = 16
MIB = 1024 * 1024
AVAILABLE = (compress16 is not None and has_avx512 is not None and bool(has_avx512()) and twin_md5.NATIVE
             and os.environ.get("LLMR_MD5_LANES", "1") != "0")
VECTOR_FROM = 3  # busy lanes from which one 16-lane pass beats compress2 per group (measured above)
MAX_BLOCKS = 16384  # 1 MiB per lane per pass, so a new chain joins within a few milliseconds


@dataclass
class _Job:
    data: memoryview  # whole 64-byte blocks
    done: int = 0  # blocks hashed
    hooks: list[Callable[[], None]] = field(default_factory=list)  # run once the job is hashed

    @property
    def left(self) -> int:
        return len(self.data) // BLOCK - self.done


class ChainGroup:
    """MD5 states advanced over the same bytes, in order (a twin's part and whole chains)."""

    def __init__(self, states: list[bytearray]) -> None:
        if not 1 <= len(states) <= 2:
            raise ValueError(f"a chain group holds 1 or 2 MD5 states, got {len(states)}")
        self.states = states
        self.jobs: deque[_Job] = deque()
        self.pending = 0  # bytes submitted, not yet hashed


class LaneEngine:
    def __init__(self, *, min_lanes: int = 8, high_water: int = 4 * MIB) -> None:
        if not 1 <= min_lanes <= LANES:
            raise ValueError(f"min_lanes must be 1..{LANES}, got {min_lanes}")
        self.min_lanes, self.high_water = min_lanes, high_water
        self._cond = threading.Condition()
        self._waiting: dict[ChainGroup, None] = {}  # groups with jobs, oldest first
        self._running = False
        # (busy lanes, blocks) of the latest 16-lane passes; bounded, as a worker lives for days
        self.passes: deque[tuple[int, int]] = deque(maxlen=4096)

    def submit(self, group: ChainGroup, data: bytes | memoryview) -> None:
        """Queue whole blocks for ``group``'s states; may hash everyone's waiting bytes first."""
        view = memoryview(data).cast("B")
        if len(view) % BLOCK:
            raise ValueError(f"the lanes take whole {BLOCK}-byte blocks, got {len(view)} bytes")
        if not len(view):
            return
        with self._cond:
            group.jobs.append(_Job(view))
            group.pending += len(view)
            self._waiting[group] = None
            while True:
                if self._running:
                    if group.pending <= self.high_water:
                        return
                    self._cond.wait()  # backpressure: the running thread will reach this group
                    continue
                if not self._due(None):
                    return
                self._running = True
                break
        self._drive(None)

    def after(self, group: ChainGroup, hook: Callable[[], None]) -> None:
        """Run ``hook`` once everything submitted for ``group`` so far is hashed."""
        with self._cond:
            if group.jobs:
                group.jobs[-1].hooks.append(hook)
            else:
                hook()

    def flush(self, group: ChainGroup) -> None:
        """Return once every byte submitted for ``group`` is hashed (and its hooks ran)."""
        with self._cond:
            while True:
                if not group.jobs:
                    return
                if not self._running:
                    self._running = True
                    break
                self._cond.wait()
        self._drive(group)

    def _lanes_waiting(self) -> int:
        return sum(len(g.states) for g in self._waiting)

    def _due(self, force: ChainGroup | None) -> bool:
        if force is not None and force.jobs:
            return True
        return bool(self._waiting) and (self._lanes_waiting() >= self.min_lanes or
                                        any(g.pending > self.high_water for g in self._waiting))

    def _drive(self, force: ChainGroup | None) -> None:
        try:
            while True:
                with self._cond:
                    if not self._due(force):
                        return
                    chosen = self._choose(force)
                    heads = [(g, g.jobs[0]) for g in chosen]
                blocks = min(MAX_BLOCKS, *(job.left for _, job in heads))
                self._hash(heads, blocks)
                with self._cond:
                    for group, job in heads:
                        job.done += blocks
                        group.pending -= blocks * BLOCK
                        if not job.left:
                            group.jobs.popleft()
                            for hook in job.hooks:
                                hook()
                        if not group.jobs:
                            del self._waiting[group]
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()

    def _choose(self, force: ChainGroup | None) -> list[ChainGroup]:
        chosen: list[ChainGroup] = [force] if force is not None and force.jobs else []
        lanes = sum(len(g.states) for g in chosen)
        for group in sorted(self._waiting, key=lambda g: -g.pending):
            if group is not force and lanes + len(group.states) <= LANES:
                chosen.append(group)
                lanes += len(group.states)
        return chosen

    def _hash(self, heads: list[tuple[ChainGroup, _Job]], blocks: int) -> None:
        lanes = sum(len(g.states) for g, _ in heads)
        if lanes >= VECTOR_FROM:
            states, buffers = [], []
            for group, job in heads:
                start = job.done * BLOCK
                for state in group.states:
                    states.append(state)
                    buffers.append(job.data[start:start + blocks * BLOCK])
            compress16(states, buffers, blocks)
            self.passes.append((lanes, blocks))
            return
        for group, job in heads:  # too few lanes busy: one group at a time is cheaper
            data = job.data[job.done * BLOCK:(job.done + blocks) * BLOCK]
            if len(group.states) == 2:
                twin_md5.compress2(*group.states, data)
            else:
                twin_md5.compress1(group.states[0], data)


ENGINE = LaneEngine() if AVAILABLE else None


class LanedTwinMD5(TwinMD5):
    """``TwinMD5`` whose blocks are hashed by the shared ``LaneEngine``. An object that fits in
    one part has one chain (its part is the whole)."""

    def __init__(self, part_size: int, size: int | None = None, *, engine: LaneEngine | None = None) -> None:
        super().__init__(part_size)
        engine = engine or ENGINE
        if engine is None:
            raise RuntimeError("the MD5 lanes are not available here (tasks._md5_lanes, AVX-512)")
        self._engine = engine
        self._single = size is not None and size <= part_size
        self._group = ChainGroup([self._whole] if self._single else [self._part, self._whole])

    def update(self, data: bytes | memoryview) -> None:
        if self._single and self._total + memoryview(data).nbytes > self.part_size:
            raise ValueError(f"more than the {self.part_size} bytes announced")
        super().update(data)
        if not isinstance(data, bytes):
            self._engine.flush(self._group)  # the caller may reuse its buffer

    def _blocks(self, data: bytes | memoryview) -> None:
        self._engine.submit(self._group, data)

    def _close_part(self) -> None:
        if self._single:  # exactly one full part: its digest is the whole object's
            self._engine.after(self._group, lambda: self._digests.append(twin_md5._finish(self._whole, b"", self.part_size)))
        else:
            self._engine.after(self._group, super()._close_part)

    def part_digests(self) -> list[bytes]:
        self._engine.flush(self._group)
        if self._single and self._in_part:
            return [self.whole_digest()]
        return super().part_digests()

    def part_digest(self, number: int) -> bytes:
        self._engine.flush(self._group)
        if self._single and self._in_part and number == 1:
            return self.whole_digest()
        return super().part_digest(number)

    def whole_digest(self) -> bytes:
        self._engine.flush(self._group)
        return super().whole_digest()
