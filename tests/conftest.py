"""Test-session wiring: one platform on free ports in a temporary state dir, shared by every test.

The Prefect environment is set here, at import, before any test module imports prefect, so the
whole session (flows run in-process, clients, the worker) talks to the session's own server and
never to a developer's running `make demo` platform.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.settings import PlatformSettings
from tests.ports import settings_on_free_ports


# LLMR_TEST_DATABASE=postgresql runs the session's Prefect server on a PostgreSQL cluster of its
# own (`make test` runs the integration tier a second time that way); default: SQLite.
TEST_DATABASE = os.environ.get("LLMR_TEST_DATABASE", "sqlite")
SESSION_STATE_DIR = Path(tempfile.mkdtemp(prefix="llmr-test-"))
SESSION_STATE_DIR.chmod(0o711)  # the postgres user (PostgreSQL refuses root) must reach its data dir
# Tests judge behaviour, not speed: generous gateway timeouts keep a loaded CI machine's slow
# answer or health check from turning into a failover (bench/failover measures the defaults).
# The check timeout still marks a hung region down before a request's last retry (two checks,
# 8.5 s at most, against two 6 s timeouts): see haproxy_config.check_retry_margin.
# zombie_after_s 60: a killed worker's run is Crashed within about a minute (heartbeats every 30 s).
SESSION_SETTINGS = settings_on_free_ports(SESSION_STATE_DIR / "platform", database=TEST_DATABASE, zombie_after_s=60,
                                          gateway_timeout_server_s=6.0, gateway_check_timeout_s=4.0)
SESSION_SETTINGS.prefect_home.mkdir(parents=True, exist_ok=True)
os.environ.update(SESSION_SETTINGS.prefect_env())
os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"

ARTIFACT_DIR = Path(os.environ.get("LLMR_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"llm-resilience test platform: Prefect server on {TEST_DATABASE}"


def _send_pending_logs() -> None:
    """Flow-run logs still queued for the API go out before its server stops (else Prefect prints
    "Error logging to API" after the last test)."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)


@pytest.fixture(scope="session")
def platform() -> Iterator[PlatformSettings]:
    """The whole local platform, up for the session; stopped (and checked stopped) at the end."""
    from deployments.stack.launcher import Launcher

    settings = SESSION_SETTINGS
    launcher = Launcher(settings)
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "deployments.stack.watchdog", "--state-dir", str(settings.state_dir),
         "--owner-pid", str(os.getpid()), "--max-seconds", "5400"],
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        launcher.up()
        yield settings
    finally:
        _send_pending_logs()
        launcher.down()
        watchdog.terminate()
        watchdog.wait(10)
    leftovers = [c.name for c in launcher.components if launcher.is_running(c.name)]
    assert not leftovers, f"still running after stack-down: {leftovers}"


@pytest.fixture(scope="session")
def deployed(platform: PlatformSettings) -> PlatformSettings:
    """Every flow in prefect.yaml deployed to the session's server, as `make deploy` does."""
    from deployments.deploy import deploy_all

    deploy_all(platform)
    _pause_scheduled_drills()
    return platform


def _pause_scheduled_drills() -> None:
    """Schedules run on a real platform; on the shared test platform a scheduled drill or a
    scheduled whole-bucket replication firing mid-session would break the tests around it, so
    every schedule is paused (tests run what they need; one test checks the scheduler itself)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployments = client.read_deployments()
        assert any("drill" in d.tags for d in deployments), "no deployment tagged drill: prefect.yaml lost its drills"
        for deployment in deployments:
            client.pause_deployment(deployment.id)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Keep each phase's report on the test item, so fixtures can tell a failed test (screenshots)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Session fixtures (the platform) are torn down by now: drop its state dir if all passed.

    After a failure the state dir stays, because its logs/ are what explains the failure.
    """
    import shutil

    if exitstatus == 0:
        shutil.rmtree(SESSION_STATE_DIR, ignore_errors=True)
    elif SESSION_STATE_DIR.exists():
        print(f"\nthe test platform's state and logs are kept in {SESSION_STATE_DIR / 'platform' / 'logs'}")
