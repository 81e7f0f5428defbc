"""However a drill ends after injecting, the fault is rolled back and then a failed-over session
store fails back (else two Redis primaries), and the drill's own error is the one raised."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.settings import PlatformSettings
from tasks.drill_runner import DrillInterrupted
from tests.unit.drill_fakes import Drill

FAILED_BACK = ["inject", "rollback", "follow", "switchover", "load stopped"]


@pytest.mark.parametrize(("fails_in", "error"), [("observe", DrillInterrupted), ("rollback", RuntimeError)])
def test_a_drill_that_raises_after_injection_still_fails_the_sessions_back(
        fails_in: str, error: type[Exception], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drill = Drill(PlatformSettings(state_dir=tmp_path), fails_in=fails_in)
    drill.install(monkeypatch)
    with pytest.raises(error):
        drill.runner().run()
    assert drill.steps == FAILED_BACK


def test_a_failing_failback_is_noted_on_the_drills_error_not_raised_over_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drill = Drill(PlatformSettings(state_dir=tmp_path), fails_in="observe", failback_fails=True)
    drill.install(monkeypatch)
    with pytest.raises(DrillInterrupted) as raised:
        drill.runner().run()
    assert drill.steps == FAILED_BACK
    assert raised.value.__notes__ == [
        "session failback also failed: ConnectionError: redis-region-b did not answer within 2 s"]


def test_a_drill_that_ends_normally_fails_the_sessions_back_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drill = Drill(PlatformSettings(state_dir=tmp_path))
    drill.install(monkeypatch)
    outcome = drill.runner().run()
    assert drill.steps == FAILED_BACK
    assert [e.name for e in outcome.journal.entries if e.name.startswith("session-")] == [
        "session-resync", "session-failback"]
