"""One side of the benchmark: this project's `replicate` flow, in its own process (for peak RSS).

Reads a JSON job on argv[1]; saves the two StorageTarget blocks, warms Prefect up with a run over
an empty prefix (not timed), prints ``ready`` and waits for a line on stdin (the harness empties the
destination and lets the machine settle, exactly as it does before rclone's run), then times
`replicate` and prints one JSON line with the figures: wall time, the CPU-seconds of this process
and of each server (``server_pids``) during the timed run, peak RSS.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import psutil


def server_cpu(servers: dict[str, psutil.Process]) -> dict[str, float]:
    """CPU-seconds used so far by each server, with its child processes (Prefect's API runs in one)."""
    return {name: sum(sum(p.cpu_times()[:2]) for p in [ps, *ps.children(recursive=True)]) for name, ps in servers.items()}


def main() -> None:
    job = json.loads(sys.argv[1])
    from pydantic import SecretStr

    from blocks import StorageTarget
    from flows.replication import ReplicationParams, replicate

    for name, side in (("bench-src", job["src"]), ("bench-dst", job["dst"])):
        StorageTarget(url=side["url"], endpoint_url=side["endpoint"], region_name="us-east-1", access_key_id="bench",
                      secret_access_key=SecretStr("bench-secret")).save(name, overwrite=True)
    common = dict(source="bench-src", destinations=["bench-dst"], concurrency=job["concurrency"],
                  resume_dir=job["resume_dir"], delete=False)
    replicate(ReplicationParams(**common, prefix="warm-up-empty"))
    print("ready", flush=True)
    sys.stdin.readline()

    me = psutil.Process()
    baseline = me.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, me.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    servers = {name: psutil.Process(pid) for name, pid in job.get("server_pids", {}).items()}
    servers_before = server_cpu(servers)
    cpu0 = sum(me.cpu_times()[:2])
    t0 = time.perf_counter()
    report = replicate(ReplicationParams(**common))
    elapsed = time.perf_counter() - t0
    cpu = sum(me.cpu_times()[:2]) - cpu0
    servers_cpu = {k: v - servers_before[k] for k, v in server_cpu(servers).items()}
    done.set()
    sampler.join()
    d = report.destinations[0]
    print(json.dumps({
        "seconds": elapsed, "cpu_seconds": cpu, "server_cpu_seconds": servers_cpu, "copied": d.copied_objects,
        "copied_bytes": d.copied_bytes, "skipped": d.skipped_objects, "failed": d.failed_objects, "peak_rss": peak,
        "baseline_rss": baseline,
    }))


if __name__ == "__main__":
    main()
