"""One drill per target at a time: a second drill on the same component is refused, not queued.

Each component a drill touches is claimed with an exclusive ``flock`` on a file in the
platform's state dir. The kernel releases it when the holder's process ends, however it ends
(SIGKILL included), so a crashed drill never leaves a stale claim; the fault it left behind is
caught separately (the drill refuses a target whose fault is still active until its lease ends).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from tasks.errors import NonRetryableError


class DrillOverlapError(NonRetryableError):
    """Another drill holds one of this drill's targets."""


@contextmanager
def claim_targets(lock_dir: Path, components: list[str], *, experiment: str, run: str) -> Iterator[None]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    held: list[int] = []
    try:
        for component in sorted(components):  # one order for everyone: no deadlock between drills
            fd = os.open(lock_dir / f"{component}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace")
                os.close(fd)
                raise DrillOverlapError(
                    f"{component} is held by another drill ({_describe(holder)}); this drill "
                    f"({experiment}) is refused before injecting anything") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"experiment": experiment, "run": run, "pid": os.getpid(),
                                      "since": time.time()}).encode(), 0)
            held.append(fd)
        yield
    finally:
        for fd in held:
            os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor releases the flock


def _describe(holder: str) -> str:
    try:
        info = json.loads(holder)
        return f"experiment {info['experiment']}, run {info['run']}, pid {info['pid']}, since {time.ctime(info['since'])}"
    except (ValueError, KeyError):
        return "holder unknown"
