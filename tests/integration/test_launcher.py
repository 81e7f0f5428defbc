"""The launcher against real processes: the session platform, and small platforms of its own."""

import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from deployments.settings import PlatformSettings
from deployments.stack.components import Component
from deployments.stack.errors import ComponentFailedError, PortInUseError
from deployments.stack.launcher import Launcher
from deployments.stack.readiness import redis_ping
from tests.ports import settings_on_free_ports

pytestmark = pytest.mark.integration


def test_every_component_is_up_with_pid_and_log(platform: PlatformSettings) -> None:
    launcher = Launcher(platform)
    statuses = launcher.status()
    assert [s.name for s in statuses] == [c.name for c in launcher.components]
    unhealthy = [(s.name, s.detail) for s in statuses if not s.healthy]
    assert not unhealthy
    for s in statuses:
        assert s.pid is not None and psutil.pid_exists(s.pid)
        assert launcher.log_path(s.name).stat().st_size > 0
    assert "PONG (slave)" in next(s.detail for s in statuses if s.name == "redis-region-b")


def test_up_again_starts_nothing_and_keeps_the_same_processes(platform: PlatformSettings) -> None:
    launcher = Launcher(platform)
    before = {c.name: launcher.record(c.name) for c in launcher.components}
    assert launcher.up() == []
    after = {c.name: launcher.record(c.name) for c in launcher.components}
    assert after == before


def test_every_server_binds_loopback_only(platform: PlatformSettings) -> None:
    launcher = Launcher(platform)
    pids = set()
    for comp in launcher.components:
        record = launcher.record(comp.name)
        assert record is not None
        proc = psutil.Process(record.pid)
        pids |= {record.pid, *(child.pid for child in proc.children(recursive=True))}
    listening = [c for c in psutil.net_connections(kind="inet") if c.pid in pids and c.status == psutil.CONN_LISTEN]
    assert listening, "no listening sockets found for the platform"
    assert all(c.laddr.ip.startswith("127.") for c in listening), [c.laddr for c in listening]


def test_small_platform_starts_and_stops_exactly_its_processes(tmp_path: Path) -> None:
    launcher = Launcher(settings_on_free_ports(tmp_path))
    only = ["s3-region-a", "redis-region-a", "redis-region-b"]
    started = launcher.up(only, provision=False)
    assert started == ["s3-region-a", "redis-region-a", "redis-region-b"]
    pids = [launcher.record(name).pid for name in only]
    assert all(psutil.pid_exists(pid) for pid in pids)
    assert not launcher.is_running("llm-region-a")
    # region-b's Redis is a replica of region-a's
    deadline = time.time() + 15
    while time.time() < deadline and "slave" not in redis_ping("127.0.0.1", launcher.settings.region_b.redis_port).detail:
        time.sleep(0.2)
    assert "slave" in redis_ping("127.0.0.1", launcher.settings.region_b.redis_port).detail

    assert sorted(launcher.down()) == sorted(only)
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not any(launcher.pid_path(name).exists() for name in only)
    assert launcher.down() == []  # stopping twice is harmless


def test_foreign_process_on_a_port_leaves_nothing_half_started(tmp_path: Path) -> None:
    launcher = Launcher(settings_on_free_ports(tmp_path))
    port = launcher.settings.region_a.redis_port
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", port))
        foreign.listen()
        with pytest.raises(PortInUseError) as err:
            launcher.up(["s3-region-a", "s3-region-b", "redis-region-a"], provision=False)
    assert f"port {port}" in str(err.value) and "redis-region-a" in str(err.value)
    assert f"pid {os.getpid()}" in str(err.value)
    assert not any(launcher.is_running(c.name) for c in launcher.components)


def test_component_that_cannot_start_is_named_with_its_log_tail(tmp_path: Path) -> None:
    launcher = Launcher(settings_on_free_ports(tmp_path))
    good = next(c for c in launcher.components if c.name == "redis-region-a")
    broken = Component(
        name="broken-redis", argv=["redis-server", "--port", "not-a-port"], url="redis://",
        ports=(), ready=lambda: redis_ping("127.0.0.1", 1),
    )
    launcher.components = [good, broken]
    with pytest.raises(ComponentFailedError) as err:
        launcher.up(provision=False)
    message = str(err.value)
    assert message.startswith("broken-redis did not come up: the process exited")
    assert "not-a-port" in message  # the log tail shows redis' own complaint
    # what this call started is stopped again
    assert not launcher.is_running("redis-region-a")


def test_killed_component_is_restarted_by_up(tmp_path: Path) -> None:
    launcher = Launcher(settings_on_free_ports(tmp_path))
    launcher.up(["redis-region-a"], provision=False)
    try:
        first = launcher.record("redis-region-a")
        os.kill(first.pid, signal.SIGKILL)
        psutil.Process(first.pid).wait(5) if psutil.pid_exists(first.pid) else None
        assert not launcher.is_running("redis-region-a")
        assert launcher.up(["redis-region-a"], provision=False) == ["redis-region-a"]
        assert launcher.record("redis-region-a").pid != first.pid
        assert launcher.status()[3].healthy
    finally:
        launcher.down()
