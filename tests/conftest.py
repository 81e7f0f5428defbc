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


SESSION_STATE_DIR = Path(tempfile.mkdtemp(prefix="llmr-test-"))
# Tests judge behaviour, not speed: a generous gateway timeout keeps a loaded CI machine's slow
# answer from turning into a failover (bench/failover measures with the 2 s default).
SESSION_SETTINGS = settings_on_free_ports(SESSION_STATE_DIR / "platform", gateway_timeout_server_s=6.0)
SESSION_SETTINGS.prefect_home.mkdir(parents=True, exist_ok=True)
os.environ.update(SESSION_SETTINGS.prefect_env())
os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"

ARTIFACT_DIR = Path(os.environ.get("LLMR_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


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
    """Drills run weekly on a real platform; on the shared test platform a scheduled one firing
    mid-session would break every other test, so their schedules are paused (tests run them)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    with get_client(sync_client=True) as client:
        drills = client.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["drill"])))
        assert drills, "no deployment tagged drill: prefect.yaml lost its drills"
        for deployment in drills:
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
