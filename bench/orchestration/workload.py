"""The measured workload, run in its own process (so its peak RSS is the flow process's): replicate
``prefix`` region-a -> region-b, then verify the 64-shard checkpoint in ``checkpoint_dir``.

Prints one JSON line: the two flow run ids, the wall time of each flow call, and its own peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main(prefix: str, checkpoint_dir: str) -> int:
    from blocks import StorageTarget
    from flows.checkpoint_verification import CheckpointLocation, ManifestMode, VerifyOptions, verify_checkpoint
    from flows.replication import ReplicationParams, replicate

    t0 = time.perf_counter()
    state = replicate(ReplicationParams(prefix=prefix), return_state=True)
    t1 = time.perf_counter()
    ck = verify_checkpoint(CheckpointLocation(prefix=""), VerifyOptions(manifest=ManifestMode.off),
                           target=StorageTarget(url=f"file://{checkpoint_dir}"), return_state=True)
    t2 = time.perf_counter()
    report = state.result()
    print(json.dumps({
        "replicate_run": str(state.state_details.flow_run_id), "verify_run": str(ck.state_details.flow_run_id),
        "replicate_wall_s": t1 - t0, "verify_wall_s": t2 - t1, "copied": report.total("copied_objects"),
        "verify_state": ck.type.value, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
