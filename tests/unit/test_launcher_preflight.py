import socket
from pathlib import Path

import pytest

from deployments.settings import PlatformSettings
from deployments.stack import launcher as launcher_module
from deployments.stack.errors import MissingBinaryError, PortInUseError, StackError
from deployments.stack.launcher import Launcher
from tests.ports import settings_on_free_ports


def test_missing_haproxy_says_exactly_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher_module.shutil, "which", lambda name: None if name == "haproxy" else "/usr/bin/" + name)
    launcher = Launcher(settings_on_free_ports(tmp_path))
    with pytest.raises(MissingBinaryError) as err:
        launcher.up(["gateway"], provision=False)
    assert "apt-get install -y haproxy" in str(err.value)
    assert "gateway" in str(err.value)
    assert not launcher.pid_path("gateway").exists()


def test_missing_redis_server_names_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher_module.shutil, "which", lambda name: None)
    with pytest.raises(MissingBinaryError) as err:
        Launcher(settings_on_free_ports(tmp_path)).up(["redis-region-a"], provision=False)
    assert "apt-get install -y redis-server" in str(err.value)


def test_busy_port_stops_the_launch_before_anything_starts(tmp_path: Path) -> None:
    settings = settings_on_free_ports(tmp_path)
    launcher = Launcher(settings)
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", settings.region_b.s3_port))
        foreign.listen()
        with pytest.raises(PortInUseError) as err:
            launcher.up(["s3-region-a", "s3-region-b"], provision=False)
    message = str(err.value)
    assert f"port {settings.region_b.s3_port}" in message and "s3-region-b" in message
    assert "nothing was started" in message
    assert not any(launcher.is_running(c.name) for c in launcher.components)
    assert not launcher.pid_path("s3-region-a").exists()


def test_unknown_component_is_named(tmp_path: Path) -> None:
    with pytest.raises(StackError) as err:
        Launcher(PlatformSettings(state_dir=tmp_path)).up(["s3-region-z"], provision=False)
    assert "s3-region-z" in str(err.value)


def test_unreachable_database_url_names_the_setting_before_anything_starts(tmp_path: Path) -> None:
    from tests.ports import free_ports

    dead = free_ports(1)[0]  # nothing listens there
    settings = settings_on_free_ports(tmp_path, database="postgresql",
                                      database_url=f"postgresql://prefect:pw@127.0.0.1:{dead}/prefect")
    launcher = Launcher(settings)
    assert "postgres" not in [c.name for c in launcher.components]  # the user's server, not a cluster of ours
    with pytest.raises(StackError) as err:
        launcher.up(["prefect-server"], provision=False)
    message = str(err.value)
    assert "LLMR_DATABASE_URL" in message and f"127.0.0.1:{dead}" in message
    assert "pw" not in message.split("cannot connect")[0]  # the password is not echoed
    assert not launcher.pid_path("prefect-server").exists()


def test_postgresql_setting_adds_a_cluster_the_server_waits_for(tmp_path: Path) -> None:
    launcher = Launcher(settings_on_free_ports(tmp_path, database="postgresql", workers=3))
    names = [c.name for c in launcher.components]
    assert names[0] == "postgres" and names.count("prefect-server") == 1
    assert names[-3:] == ["prefect-worker", "prefect-worker-2", "prefect-worker-3"]
    waves = [[c.name for c in wave] for wave in launcher._waves(launcher.components)]
    assert "prefect-server" not in waves[0] and "postgres" in waves[0]
    server_wave = next(i for i, w in enumerate(waves) if "prefect-server" in w)
    assert all(i > server_wave for i, w in enumerate(waves) if "prefect-worker-2" in w)
    server = next(c for c in launcher.components if c.name == "prefect-server")
    assert server.env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://prefect:")
    worker = next(c for c in launcher.components if c.name == "prefect-worker-2")
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in worker.env  # clients never get the password
