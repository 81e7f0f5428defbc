"""`make demo`: run every deployment in prefect.yaml once, through the worker, and say how each went.

The platform is already up and deployed (the Makefile does that first). This seeds minimal demo
data (`deployments/demo_seed.py`), then asks the server to run each deployment of `RUNS` in
order, waiting for the worker to finish one before starting the next, and prints one line per
run, a summary table and the UI URL. A run that fails does not stop the others; the exit code
is 1 when any run did not complete, and each is named with its state message.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deployments.demo_seed import CANDIDATE_TEMPLATE, CHECKPOINT_PREFIX, DEMO_AUTHOR, PROMPT, PROMPT_PARAMS, SCRATCH_BLOCK
from deployments.settings import PROJECT_ROOT, PlatformSettings, load_settings

RUN_TIMEOUT_S = 900  # the longest run (a drill, or prompts on a busy machine) takes a few minutes
SETTLE_TIMEOUT_S = 120  # after a drill: until the gateway and the session stores are back to normal


@dataclass(frozen=True)
class DemoRun:
    """One run of the demo: a deployment (`flow/deployment`), the parameters it gets on top of the
    deployment's own, and what it shows."""

    deployment: str
    parameters: dict[str, Any]
    shows: str
    settle_after: bool = False  # wait until the platform is back to normal before the next run


_DRILL = "failover-drill/drill-{}"
# No response cache: each demo run asks the real model again (as the nightly deployment does).
_PROMPT_RUN = {"prompt": PROMPT, "suite_path": "examples/prompts/capitals.yaml", "endpoint_block": "gateway",
               "runner": {"samples": 2, "max_concurrency": 1, "cache_dir": None}}

# Every deployment in prefect.yaml, in the order each finds what it needs ({} = the deployment's
# own parameters). tests/unit/test_demo_plan.py fails when a deployment has no entry here.
RUNS: tuple[DemoRun, ...] = (
    DemoRun("health-check/health-check", {}, "probe every component; health-report table"),
    DemoRun("replicate/replicate", {},
            "copy region-a (demo data, checkpoint) to region-b, verified; region-b's own backups/ and "
            "drills/ are excluded (exclude_prefixes), so deletes never touch them"),
    DemoRun("replication-status/replication-status", {}, "lag and pending objects after the copy (copies nothing)"),
    DemoRun("backup/backup", {}, "region-a's bucket and sessions into the repository in region-b"),
    DemoRun("verify-backup/verify-backup", {"params": {"read_fraction": 1.0}}, "read and hash every pack"),
    DemoRun("restore/restore", {"params": {"target": SCRATCH_BLOCK, "source": "region-a"}},
            "latest snapshot into a scratch directory (never over live data), every file verified"),
    DemoRun("prune/prune", {}, "retention (keep last 7, daily 14, ...): removes only what no kept snapshot needs"),
    DemoRun("restore-drill/restore-drill", {}, "restore a sample of the latest snapshot (all of the demo's) to a temp dir; RTO and RPO"),
    DemoRun("verify-checkpoint/verify-checkpoint",
            {"location": {"storage": "region-a", "prefix": CHECKPOINT_PREFIX},
             "options": {"manifest": "auto", "hash_algorithm": "blake3", "compare_replica": "region-b"}},
            "the seeded safetensors checkpoint: structure, hash manifest, region-b's copy"),
    DemoRun("manage-prompt/manage-prompt",
            {"change": {"prompt": PROMPT, "action": "create-version", "template": CANDIDATE_TEMPLATE,
                        "params": PROMPT_PARAMS, "label": "candidate", "message": "shorter answers",
                        "author": DEMO_AUTHOR}},
            "create the candidate version (once: same content = same version) and label it candidate"),
    DemoRun("prompt-regression/prompt-regression", {"request": {**_PROMPT_RUN, "candidate": "candidate",
                                                                "baseline": "production"}},
            "candidate vs production on the real model through the gateway: verdict"),
    DemoRun("prompt-regression/prompt-regression-nightly", {},
            "production vs the last version that passed; rolls production back if it regressed"),
    DemoRun("promote-prompt/promote-prompt", {"request": {**_PROMPT_RUN, "candidate": "candidate",
                                                          "baseline": "production"}},
            "move candidate to production when the gate passes"),
    DemoRun(_DRILL.format("model-server-crash"), {}, "SIGKILL region-a's model server under chat traffic", True),
    DemoRun(_DRILL.format("model-server-hang"), {}, "SIGSTOP region-a's model server", True),
    DemoRun(_DRILL.format("model-server-error-burst"), {}, "region-a answers 503s for a while", True),
    DemoRun(_DRILL.format("model-server-slow"), {}, "region-a answers 5 s late", True),
    DemoRun(_DRILL.format("region-outage"), {}, "region-a's model server, Redis and S3 hang", True),
    DemoRun("regional-failover/regional-failover", {}, "traffic and sessions to region-b"),
    DemoRun("failback/failback", {"policy": {"max_p99_ms": 10000}},
            "back to region-a in weighted steps (10/50/100%), each held while probes stay healthy: the "
            "platform's normal state; the p99 bound is loosened for a busy 2-core machine, the 1% error "
            "bound is kept"),
)


# -- prefect.yaml ------------------------------------------------------------------------------
def deployments_in(prefect_yaml: Path = PROJECT_ROOT / "prefect.yaml") -> dict[str, tuple[Any, dict[str, Any]]]:
    """`flow/deployment` -> (the flow its entrypoint names, its prefect.yaml entry), in file order.

    Only the local work pool's: the Kubernetes variants are not deployed on the local platform.
    """
    from deployments.deploy import local_deployments

    local = set(local_deployments(prefect_yaml))
    out = {}
    for entry in yaml.safe_load(prefect_yaml.read_text())["deployments"]:
        if entry["name"] not in local:
            continue
        path, _, func = entry["entrypoint"].partition(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func)
        out[f"{flow.name}/{entry['name']}"] = (flow, entry)
    return out


def deployment_names(prefect_yaml: Path = PROJECT_ROOT / "prefect.yaml") -> list[str]:
    return list(deployments_in(prefect_yaml))


def plan_problems(runs: tuple[DemoRun, ...], deployments: list[str]) -> list[str]:
    """Why the table does not match prefect.yaml (empty when every deployment runs exactly once)."""
    planned = [r.deployment for r in runs]
    problems = [f"no demo entry for deployment {d} (add it to RUNS in deployments/demo.py)"
                for d in deployments if d not in planned]
    problems += [f"demo entry {d} is not a deployment in prefect.yaml" for d in planned if d not in deployments]
    problems += [f"demo entry {d} appears {planned.count(d)} times" for d in sorted(set(planned))
                 if planned.count(d) > 1]
    return problems


# -- running -----------------------------------------------------------------------------------
@dataclass
class RunOutcome:
    deployment: str
    state: str
    seconds: float
    url: str = ""
    message: str = ""
    completed: bool = False
    notes: list[str] = field(default_factory=list)


def run_one(run: DemoRun, settings: PlatformSettings) -> RunOutcome:
    """Run a deployment through the worker and wait for its final state; never raises."""
    from prefect.deployments import run_deployment

    started = time.monotonic()
    try:
        flow_run = run_deployment(run.deployment, parameters=run.parameters, timeout=RUN_TIMEOUT_S,
                                  poll_interval=2, as_subflow=False)
    except Exception as exc:  # noqa: BLE001 - reported, and the next runs still go
        return RunOutcome(run.deployment, "NOT STARTED", time.monotonic() - started,
                          message=f"{type(exc).__name__}: {exc}"[:500])
    state = flow_run.state
    final = state is not None and state.is_final()
    return RunOutcome(
        run.deployment, (state.name if state else "unknown") + ("" if final else f" (still, after {RUN_TIMEOUT_S}s)"),
        time.monotonic() - started, f"{settings.prefect_ui_url}/runs/flow-run/{flow_run.id}",
        (state.message or "") if state else "", completed=bool(state and state.is_completed()),
    )


def departures_from_normal(settings: PlatformSettings) -> list[str]:
    """What differs from the platform's normal state: region-a serving at the gateway at full
    weight, region-b the standby, region-a's Redis the primary."""
    from deployments.stack.haproxy_config import BACKEND, PRIMARY_WEIGHT, STANDBY_WEIGHT
    from deployments.stack.haproxy_runtime import HAProxyRuntime
    from tasks.session_topology import RedisNode, is_primary

    a, b = settings.region_a, settings.region_b
    servers = HAProxyRuntime(settings.haproxy_socket, BACKEND).servers()
    out = [f"gateway: {name} not serving ({servers[name].operational}, maintenance={servers[name].maintenance})"
           for name in (a.name, b.name) if not servers[name].serving]
    out += [f"gateway: {name} weight {servers[name].weight}, normally {weight}"
            for name, weight in ((a.name, PRIMARY_WEIGHT), (b.name, STANDBY_WEIGHT)) if servers[name].weight != weight]
    if not is_primary(RedisNode(f"redis-{a.name}", settings.host, a.redis_port)):
        out.append(f"sessions: redis-{a.name} is not the primary")
    return out


def settle(settings: PlatformSettings, timeout_s: float = SETTLE_TIMEOUT_S) -> list[str]:
    """Wait until the platform is back to normal (a drill's rollback can finish before region-a is
    ready again); what still differs after ``timeout_s`` (empty: normal)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            left = departures_from_normal(settings)
        except Exception as exc:  # noqa: BLE001 - a component still restarting
            left = [f"{type(exc).__name__}: {exc}"]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


# -- reporting ---------------------------------------------------------------------------------
def progress_line(index: int, total: int, outcome: RunOutcome) -> str:
    return f"[{index:>2}/{total}] {outcome.deployment:<45} {outcome.state:<11} {outcome.seconds:>6.1f}s  {outcome.url}"


def summary(outcomes: list[RunOutcome], ui_url: str) -> tuple[str, int]:
    """The summary table and the exit code (1 when any run did not complete)."""
    width = max(len(o.deployment) for o in outcomes)
    lines = ["", f"{'deployment':<{width}}  {'state':<11} {'seconds':>8}  message",
             f"{'-' * width}  {'-' * 11} {'-' * 8}  {'-' * 30}"]
    lines += [f"{o.deployment:<{width}}  {o.state:<11} {o.seconds:>8.1f}  {o.message[:100]}" for o in outcomes]
    failed = [o for o in outcomes if not o.completed]
    lines += ["", f"{len(outcomes) - len(failed)} of {len(outcomes)} runs completed in "
                  f"{sum(o.seconds for o in outcomes):.0f} s.", f"Prefect UI: {ui_url}"]
    for o in failed:
        lines.append(f"DID NOT COMPLETE: {o.deployment}: {o.state}: {o.message or '(no state message)'}"
                     + (f" ({o.url})" if o.url else ""))
    for o in outcomes:
        lines += [f"note after {o.deployment}: {n}" for n in o.notes]
    return "\n".join(lines), (1 if failed else 0)


def main() -> int:
    settings = load_settings()
    os.environ.update(settings.prefect_env())
    problems = plan_problems(RUNS, deployment_names())
    if problems:
        print("the demo's table does not match prefect.yaml:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2

    from deployments.demo_seed import seed

    print(seed(settings).line(), flush=True)
    unusual = departures_from_normal(settings)
    if unusual:  # e.g. a failback that aborted last time: the drills would measure that, not a failover
        print("warning: the platform is not in its normal state: " + "; ".join(unusual), flush=True)
    print(f"running {len(RUNS)} deployments one after another through work pool {settings.work_pool} "
          f"(the five drills take about a minute each) ...", flush=True)
    outcomes = []
    for index, run in enumerate(RUNS, 1):
        outcome = run_one(run, settings)
        print(progress_line(index, len(RUNS), outcome), flush=True)
        if run.settle_after:
            outcome.notes += settle(settings)
        outcomes.append(outcome)
    text, code = summary(outcomes, settings.prefect_ui_url)
    print(text)
    left = settle(settings)
    print("platform state: " + ("normal (region-a primary, region-b standby)" if not left else
                                "NOT back to normal: " + "; ".join(left) + " (run the failback deployment "
                                "again once the machine is quieter)"))
    print(f"Prometheus: {settings.metrics_url}   alert inbox: {settings.notification_inbox_url}")
    print("The platform keeps running; `make stack-down` stops it.")
    return 1 if left else code


if __name__ == "__main__":
    sys.exit(main())
