"""Fault injectors on the real platform: the gateway's view of each fault, and leases that undo them."""

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from deployments.settings import PlatformSettings
from deployments.stack.launcher import Launcher
from deployments.stack.readiness import haproxy_command
from tasks.fault_injectors import ProcessFault, ProxyFault, region_outage

pytestmark = pytest.mark.integration


def _server_up(settings: PlatformSettings, server: str) -> bool:
    """HAProxy's own view: is ``server`` operational (srv_op_state 2)?"""
    state = haproxy_command(settings.haproxy_socket, "show servers state llm_models")
    for line in state.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[3] == server:
            return fields[5] == "2"
    raise AssertionError(f"server {server} not in HAProxy state:\n{state}")


def _wait(predicate, timeout_s: float = 30.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _complete(settings: PlatformSettings) -> httpx.Response:
    return httpx.post(
        f"{settings.gateway_url}/chat/completions",
        json={"model": settings.llm_model_alias, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 2},
        timeout=60,
    )


def test_error_burst_on_region_a_moves_traffic_to_region_b_losing_no_request(platform: PlatformSettings) -> None:
    """Each request that meets region-a's 503 is retried on region-b (an active standby, which a
    redispatched retry can reach), so none fails; the active checks then mark region-a down.

    (A retried 503 is invisible to HAProxy's passive checks, which judge only the answer kept.)"""
    fault = ProxyFault(platform, "region-a", kind="error_burst", status=503)
    assert fault.touches() == ["chaos-region-a"]
    fault.inject(lease_s=60)
    try:
        outcomes = []
        for _ in range(6):
            resp = _complete(platform)
            outcomes.append((resp.status_code, resp.headers.get("x-llmr-backend")))
        assert outcomes == [(200, "region-b")] * 6, outcomes
        assert _wait(lambda: not _server_up(platform, "region-a"), timeout_s=10), "HAProxy did not mark region-a down"
    finally:
        fault.rollback()
    assert not fault.is_active()
    assert _wait(lambda: _server_up(platform, "region-a")), "region-a never came back after rollback"


def test_proxy_fault_ends_by_itself_when_its_lease_runs_out(platform: PlatformSettings) -> None:
    fault = ProxyFault(platform, "region-b", kind="slow", latency_ms=50)
    fault.inject(lease_s=1.0)
    assert fault.is_active()
    assert _wait(lambda: not fault.is_active(), timeout_s=5)


def test_hang_survives_nothing_when_the_drill_process_is_killed(platform: PlatformSettings) -> None:
    """The drill process injects a hang and is SIGKILLed; the lease resumes the component."""
    launcher = Launcher(platform)
    pid = launcher.record("llm-region-b").pid
    script = (
        "import time, sys\n"
        "from deployments.settings import load_effective_settings\n"
        "from tasks.fault_injectors import ProcessFault\n"
        f"fault = ProcessFault(load_effective_settings({str(platform.state_dir)!r}), ['llm-region-b'], kind='hang')\n"
        "fault.inject(lease_s=4)\n"
        "print('injected', flush=True)\n"
        "time.sleep(600)\n"
    )
    drill = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert drill.stdout.readline().strip() == "injected"
        assert psutil.Process(pid).status() == psutil.STATUS_STOPPED
        os.kill(drill.pid, signal.SIGKILL)
        drill.wait(10)
        assert _wait(lambda: psutil.Process(pid).status() != psutil.STATUS_STOPPED, timeout_s=20), "the lease never resumed it"
    finally:
        if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
            os.killpg(pid, signal.SIGCONT)
    assert launcher.record("llm-region-b").pid == pid


def test_crash_is_undone_by_its_lease_when_nobody_rolls_it_back(platform: PlatformSettings) -> None:
    launcher = Launcher(platform)
    before = launcher.record("llm-region-b").pid
    fault = ProcessFault(platform, ["llm-region-b"], kind="crash")
    fault.inject(lease_s=2)
    assert fault.is_active() and (not psutil.pid_exists(before) or psutil.Process(before).status() == psutil.STATUS_ZOMBIE)
    # no rollback: as if the drill died here
    assert _wait(lambda: launcher.is_running("llm-region-b") and launcher.record("llm-region-b").pid != before, 60)
    assert _wait(lambda: launcher.status()[[c.name for c in launcher.components].index("llm-region-b")].healthy, 60)
    assert not fault.is_active()


def test_region_outage_stops_the_whole_region_and_rollback_resumes_it(platform: PlatformSettings) -> None:
    fault = region_outage(platform, "region-b")
    assert fault.touches() == ["llm-region-b", "redis-region-b", "s3-region-b"]
    launcher = Launcher(platform)
    fault.inject(lease_s=60)
    try:
        for name in fault.touches():
            assert psutil.Process(launcher.record(name).pid).status() == psutil.STATUS_STOPPED
    finally:
        fault.rollback()
    for name in fault.touches():
        assert psutil.Process(launcher.record(name).pid).status() != psutil.STATUS_STOPPED
    assert not fault.is_active()


def test_unknown_targets_are_refused_before_anything_is_touched(platform: PlatformSettings) -> None:
    from tasks.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="llm-region-z"):
        ProcessFault(platform, ["llm-region-z"], kind="crash")
    with pytest.raises(ConfigurationError, match="region-z"):
        ProxyFault(platform, "region-z", kind="error_burst")
    with pytest.raises(ConfigurationError, match="not a process fault"):
        ProcessFault(platform, ["llm-region-b"], kind="melt")
