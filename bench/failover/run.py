"""Failover drill figures on the local platform, every fault kind, run by hand.

    .venv/bin/python -m bench.failover.run [--repeat 1] [--duration 12] [--rate 3]

Starts a whole platform on free loopback ports in a temporary state dir (stopped by PID at the
end, also on Ctrl-C), with the platform's default gateway (2 s server timeout), then runs each
shipped experiment in deployments/experiments/ through the same DrillRunner the flow uses, plus
the region outage once more with asynchronous sessions, to show the latency/consistency
trade-off. For each run it prints time to detect, time to fail over, time to recover, failed
requests per 1,000 and lost session turns, next to the detection bounds of the usual gateways
(Envoy outlier detection 5 x 5xx at a 10 s interval; LiteLLM Router 5 s cooldown; Route 53
health checks 30-90 s plus DNS TTL). Last line:
`RESULT failover detect_ms=<worst> failover_ms=<worst> failed_per_1000=<worst> lost_turns_sync=<n>`.
Targets on this platform: failover <= 1,000 ms for crash and error burst, <= 3,000 ms for hang
(and slow), < 1 failed request per 1,000, zero lost turns in synchronous mode.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from deployments.settings import PROJECT_ROOT
from deployments.stack.launcher import Launcher
from tasks.drill_experiment import Experiment, load_experiment
from tasks.drill_runner import DrillRunner
from tests.ports import settings_on_free_ports

EXPERIMENTS = PROJECT_ROOT / "deployments" / "experiments"
TARGET_FAILOVER_MS = {"crash": 1000, "error_burst": 1000, "hang": 3000, "slow": 3000, "region_outage": 3000}
ANCHORS = "Envoy outlier detection ~10,000 ms (5 x 5xx, 10 s interval); LiteLLM cooldown 5,000 ms; Route 53 30,000-90,000 ms + TTL"


def runs(duration: float, rate: float) -> list[tuple[str, Experiment]]:
    out = []
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        exp = load_experiment(path)
        data = exp.model_dump()
        data["duration_s"] = duration
        data["load"]["rate_rps"] = rate
        data["rollback"]["lease_s"] = max(data["rollback"]["lease_s"], duration + exp.warmup_s + 60)
        exp = Experiment.model_validate(data)
        out.append((exp.name, exp))
        if exp.fault.kind == "region_outage":
            data["load"]["session_mode"] = "async"
            out.append((f"{exp.name} (async sessions)", Experiment.model_validate(data)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--duration", type=float, default=12.0, help="seconds each fault stays in place")
    parser.add_argument("--rate", type=float, default=1.5, help="chat requests per second through the gateway")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="llmr-bench-failover-"))
    settings = settings_on_free_ports(state)
    os.environ.update(settings.prefect_env())
    launcher = Launcher(settings)
    rows = []
    journals = Path(tempfile.mkdtemp(prefix="llmr-bench-failover-journals-"))
    try:
        launcher.up()
        for _ in range(args.repeat):
            for label, exp in runs(args.duration, args.rate):
                outcome = DrillRunner(settings, exp).run()
                m = outcome.journal.measurements
                assert m is not None
                rows.append((label, exp, m, outcome))
                (journals / f"{len(rows):02d}-{exp.name}-{exp.load.session_mode}.json").write_text(
                    outcome.journal.model_dump_json(indent=1))
                print(f"{label:<38} detect {_ms(m.detect_ms)}  failover {_ms(m.failover_ms)}  recover {_ms(m.recover_ms)}"
                      f"  failed/1000 {m.failed_per_1000:6.2f} ({m.failed}/{m.requests})"
                      f"  lost turns {m.lost_turns}/{m.acknowledged_turns}  {'PASS' if outcome.passed else 'FAIL'}",
                      flush=True)
                if not outcome.passed:
                    print("    " + "; ".join(outcome.reasons), flush=True)
                time.sleep(3)  # let slowstart settle before the next fault
    finally:
        launcher.down()
        shutil.rmtree(state, ignore_errors=True)
    print(f"\njournals (every request, action and gateway state change): {journals}")
    print(f"reference detection bounds: {ANCHORS}")
    for label, exp, m, _ in rows:
        target = TARGET_FAILOVER_MS[exp.fault.kind]
        verdict = "met" if m.failover_ms is not None and m.failover_ms <= target else "MISSED"
        print(f"  {label:<38} failover target {target:>5} ms: {verdict}")
    worst = lambda values: max((v for v in values if v is not None), default=float("nan"))  # noqa: E731
    sync_lost = [m.lost_turns for _, exp, m, _ in rows if exp.load.session_mode == "sync" and m.lost_turns is not None]
    print(f"RESULT failover detect_ms={worst(m.detect_ms for _, _, m, _ in rows):.0f} "
          f"failover_ms={worst(m.failover_ms for _, _, m, _ in rows):.0f} "
          f"failed_per_1000={worst(m.failed_per_1000 for _, _, m, _ in rows):.2f} "
          f"lost_turns_sync={max(sync_lost, default=-1)}")
    return 0


def _ms(value: float | None) -> str:
    return f"{value:7.0f} ms" if value is not None else "   never  "


if __name__ == "__main__":
    raise SystemExit(main())
