"""Several process workers on one work pool: a burst of runs spreads over them, each completes once;
a worker killed mid-run (with its flow-run process: a lost host) leaves the run Crashed by the
zombie automation, and the retry completes on another worker."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.states import Scheduled

from deployments.automations import CRASH_ZOMBIES
from deployments.settings import PROJECT_ROOT, PlatformSettings
from deployments.stack.components import worker_component
from deployments.stack.launcher import Launcher
from tests.server_events import wait_for_events

pytestmark = pytest.mark.integration
WORKERS = 3


@pytest.fixture(scope="module")
def scale_pool(deployed: PlatformSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Launcher, str]]:
    """Three workers (one run at a time each) on a pool of their own, on the session's server."""
    from tests.scale_out_flows import record_worker

    pool = f"llmr-scale-{uuid.uuid4().hex[:6]}"
    settings = deployed.model_copy(update={
        "state_dir": tmp_path_factory.mktemp("scale-workers"), "work_pool": pool, "workers": WORKERS, "worker_limit": 1,
    })
    launcher = Launcher(settings)
    names = [worker_component(i) for i in range(1, WORKERS + 1)]
    launcher.up(names, provision=False)
    try:
        deployment_id = record_worker.from_source(
            source=str(PROJECT_ROOT), entrypoint="tests/scale_out_flows.py:record_worker",
        ).deploy(name="scale-probe", work_pool_name=pool, build=False, push=False, print_next_steps=False)
        yield launcher, str(deployment_id)
    finally:
        launcher.down(names)


def _worker_pids(launcher: Launcher) -> dict[int, str]:
    return {r.pid: name for name in (worker_component(i) for i in range(1, WORKERS + 1))
            if (r := launcher.record(name)) is not None}


def _executions(marker_dir: Path, run_id: str) -> list[dict]:
    log = marker_dir / f"{run_id}.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _which_worker(execution: dict, pids: dict[int, str]) -> str:
    return next(pids[p] for p in execution["ancestors"] if p in pids)


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_states(ids: list[str], wanted: set[str], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
            states = {str(r.id): r.state.type.value for r in runs}
            if all(s in wanted for s in states.values()) and len(states) == len(ids) or time.monotonic() > deadline:
                return states
            time.sleep(1)


def test_a_burst_of_runs_spreads_over_the_workers_and_each_completes_once(scale_pool, tmp_path: Path) -> None:  # noqa: ANN001
    from prefect.deployments import run_deployment

    launcher, deployment_id = scale_pool
    runs = [str(run_deployment(deployment_id, parameters={"marker_dir": str(tmp_path), "work_s": 4.0}, timeout=0).id)
            for _ in range(6)]
    states = _wait_states(runs, {"COMPLETED", "FAILED", "CRASHED"}, timeout_s=240)
    assert set(states.values()) == {"COMPLETED"}, states
    pids = _worker_pids(launcher)
    executions = {r: _executions(tmp_path, r) for r in runs}
    assert all(len(e) == 1 for e in executions.values())  # each run executed once
    assert all((tmp_path / f"{r}.done").exists() for r in runs)  # and completed once (exclusive create)
    used = {_which_worker(e[0], pids) for e in executions.values()}
    assert len(used) >= 2, f"every run went to {used}"  # one run at a time per worker spreads the burst


def test_killed_worker_leaves_a_crashed_run_whose_retry_completes_on_another_worker(
    scale_pool, deployed: PlatformSettings, tmp_path: Path,  # noqa: ANN001
) -> None:
    from prefect.deployments import run_deployment

    launcher, deployment_id = scale_pool
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name(CRASH_ZOMBIES)  # declared by `make deploy` (the deployed fixture)
    started = time.time()
    run_id = str(run_deployment(deployment_id, parameters={"marker_dir": str(tmp_path), "hold_first_s": 900}, timeout=0).id)
    deadline = time.monotonic() + 120
    while not _executions(tmp_path, run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    [first] = _executions(tmp_path, run_id)
    pids = _worker_pids(launcher)
    victim = _which_worker(first, pids)
    worker = psutil.Process(next(p for p, n in pids.items() if n == victim))
    # The run's first heartbeat (sent as it starts) opens the automation's watch; killing right after
    # it, not a heartbeat interval later, makes the wait for Crashed one zombie_after_s, not more.
    beats = wait_for_events(deployed, event="prefect.flow-run.heartbeat", resource_id=f"prefect.flow-run.{run_id}",
                            since=started - 5, timeout_s=deployed.flow_heartbeat_s + 30)
    assert beats, "the run sent no heartbeat"
    time.sleep(2)  # the automation's consumer sees the heartbeat about when the event store does
    doomed = [*worker.children(recursive=True), worker]
    assert first["pid"] in {p.pid for p in doomed}
    for proc in doomed:  # the host is lost: worker and flow-run process at once
        proc.send_signal(signal.SIGKILL)
    _, alive = psutil.wait_procs(doomed, timeout=30)
    assert all(_is_zombie(p) for p in alive)  # dead (a zombie waits only for its new parent to reap it)

    states = _wait_states([run_id], {"CRASHED", "COMPLETED", "FAILED"}, timeout_s=deployed.zombie_after_s + 120)
    assert states[run_id] == "CRASHED"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        assert "heartbeat" in (run.state.message or "")
        # Retry it as the UI's Retry button does: back to Scheduled (AwaitingRetry), for any worker of the pool.
        client.set_flow_run_state(run_id, Scheduled(name="AwaitingRetry"), force=True)
    states = _wait_states([run_id], {"COMPLETED", "FAILED", "CRASHED"}, timeout_s=180)
    assert states[run_id] == "COMPLETED"
    first_again, second = _executions(tmp_path, run_id)
    assert first_again == first
    assert _which_worker(second, _worker_pids(launcher)) != victim
    assert (tmp_path / f"{run_id}.done").exists()
