"""One side of the benchmark: this project's `replicate` flow, in its own process (for peak RSS).

Reads a JSON job on argv[1]; saves the two StorageTarget blocks, warms Prefect up with a run over
an empty prefix (not timed), then times `replicate` and prints one JSON line with the figures.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import psutil


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
    t0 = time.perf_counter()
    report = replicate(ReplicationParams(**common))
    elapsed = time.perf_counter() - t0
    done.set()
    sampler.join()
    d = report.destinations[0]
    print(json.dumps({
        "seconds": elapsed, "copied": d.copied_objects, "copied_bytes": d.copied_bytes, "skipped": d.skipped_objects,
        "failed": d.failed_objects, "peak_rss": peak, "baseline_rss": baseline,
    }))


if __name__ == "__main__":
    main()
