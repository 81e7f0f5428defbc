"""A tiny flow the scale-out tests deploy to a work pool of several workers.

Each execution appends one line (its PID and its ancestors' PIDs, so the test can tell which
worker started it) to ``<marker_dir>/<flow run id>.log``; the first execution of a run may hold
for ``hold_first_s`` (long enough to kill its worker); completing creates ``<id>.done``
exclusively, so a run that completed twice would fail.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
from prefect import flow
from prefect.context import get_run_context


@flow(name="llmr-scale-probe")
def record_worker(marker_dir: str, hold_first_s: float = 0.0, work_s: float = 1.0) -> str:
    run_id = str(get_run_context().flow_run.id)
    log = Path(marker_dir) / f"{run_id}.log"
    first = not log.exists()
    chain = [p.pid for p in psutil.Process().parents()]
    with log.open("a") as f:
        f.write(json.dumps({"pid": os.getpid(), "ancestors": chain}) + "\n")
    if first and hold_first_s:
        time.sleep(hold_first_s)
    time.sleep(work_s)
    fd = os.open(Path(marker_dir) / f"{run_id}.done", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)
    return run_id
