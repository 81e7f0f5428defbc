"""Benchmark: what Prefect's bookkeeping costs this project's flows, on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.orchestration.run              # both databases (~6 minutes on 2 cores)
    .venv/bin/python -m bench.orchestration.run sqlite       # one of them

For each database a platform subset (the Prefect server on that database, both regions' moto S3)
starts on free ports in a temporary state dir and is stopped by PID at the end. 10,000 small
objects (1-4 KiB) are seeded in region-a; a child process (the flow process) replicates them to
region-b with the default parameters and verifies a generated 64-shard safetensors checkpoint
(64 x 1 MiB, manifest off). Reported per database:

- task_runs: task runs the two flow runs created (target: at most 100 for 10,000 objects);
- work: the union of the task runs' Running intervals (start_time..end_time on the server), i.e.
  time spent inside task bodies; bookkeeping: the flow calls' wall time minus that (flow and task
  run creation, state transitions, artifacts, events, result handling; the flow body's own
  in-process planning counts here too, so the figure is an upper bound); overhead_fraction =
  bookkeeping / wall (target < 0.10);
- peak RSS of the flow process.

Last line: RESULT orchestration task_runs=<n> overhead_fraction=<f> (the larger of the two
databases' fractions), after a line comparing the databases (target: within 10%).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = 10_000
SHARDS = 64


def seed_objects(settings, prefix: str) -> None:  # noqa: ANN001 - PlatformSettings
    from deployments.stack.provision import s3_client

    client = s3_client(settings, settings.region_a)
    rng = random.Random(7)
    sizes = [rng.randint(1024, 4096) for _ in range(OBJECTS)]
    block = rng.randbytes(8192)

    def put(i: int) -> None:
        body = i.to_bytes(8, "big") + block[i % 4096: i % 4096 + sizes[i] - 8]
        client.put_object(Bucket=settings.region_a.bucket, Key=f"{prefix}/o{i:05d}.bin", Body=body)

    with ThreadPoolExecutor(10) as pool:  # botocore's default pool holds 10 connections
        list(pool.map(put, range(OBJECTS)))


def task_run_figures(settings, flow_run_ids: list[str]) -> tuple[int, float]:  # noqa: ANN001
    """Task runs of these flow runs, and the union of their Running intervals in seconds."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: settings.prefect_api_url}), get_client(sync_client=True) as c:
        runs, page = [], None
        while page is None or len(page) == 200:  # the API returns at most 200 per call
            page = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)),
                                    limit=200, offset=len(runs))
            runs += page
    spans = sorted((r.start_time.timestamp(), r.end_time.timestamp()) for r in runs if r.start_time and r.end_time)
    busy, cur_start, cur_end = 0.0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            busy += (cur_end - cur_start) if cur_end is not None else 0.0
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    busy += (cur_end - cur_start) if cur_end is not None else 0.0
    return len(runs), busy


def measure(database: str) -> dict:
    from bench.checkpoints.run import generate
    from deployments.stack.launcher import Launcher
    from tests.ports import settings_on_free_ports

    base = Path(tempfile.mkdtemp(prefix=f"llmr-bench-orch-{database}-"))
    base.chmod(0o711)  # the postgres user must reach its cluster's data dir
    settings = settings_on_free_ports(base / "platform", database=database)
    launcher = Launcher(settings, progress=lambda m: print(f"  [{database}] {m}", flush=True))
    names = [*(["postgres"] if database == "postgresql" else []), "prefect-server", "s3-region-a", "s3-region-b"]
    try:
        launcher.up(names)
        prefix = "bench/orchestration"
        seed_objects(settings, prefix)
        ckpt = base / "checkpoint"
        ckpt.mkdir()
        generate(ckpt, SHARDS * 1024 * 1024, shards=SHARDS)
        env = {**os.environ, **settings.prefect_env(), "PREFECT_LOGGING_LEVEL": "WARNING"}
        proc = subprocess.run([sys.executable, "-m", "bench.orchestration.workload", prefix, str(ckpt)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"workload failed on {database}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        task_runs, work_s = task_run_figures(settings, [out["replicate_run"], out["verify_run"]])
        wall = out["replicate_wall_s"] + out["verify_wall_s"]
        return {
            "database": database, "copied": out["copied"], "verify": out["verify_state"], "task_runs": task_runs,
            "wall_s": wall, "work_s": work_s, "bookkeeping_s": wall - work_s, "overhead": (wall - work_s) / wall,
            "peak_rss_mib": out["peak_rss_kib"] / 1024,
        }
    finally:
        launcher.down()


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    databases = argv or ["sqlite", "postgresql"]
    print(f"load average before: {os.getloadavg()}", flush=True)
    rows = [measure(db) for db in databases]
    for r in rows:
        print(f"{r['database']:>10}: copied {r['copied']} objects, checkpoint {r['verify']}, {r['task_runs']} task runs, "
              f"wall {r['wall_s']:.1f} s = work {r['work_s']:.1f} s + bookkeeping {r['bookkeeping_s']:.1f} s "
              f"(overhead {r['overhead']:.3f}), flow process peak RSS {r['peak_rss_mib']:.0f} MiB")
    if len(rows) == 2:
        a, b = rows
        print(f"postgresql / sqlite: wall {b['wall_s'] / a['wall_s']:.2f}, bookkeeping {b['bookkeeping_s'] / a['bookkeeping_s']:.2f}, "
              f"task runs {b['task_runs']} vs {a['task_runs']}, peak RSS {b['peak_rss_mib'] / a['peak_rss_mib']:.2f}")
    print(f"load average after: {os.getloadavg()}")
    print(f"RESULT orchestration task_runs={max(r['task_runs'] for r in rows)} "
          f"overhead_fraction={max(r['overhead'] for r in rows):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
