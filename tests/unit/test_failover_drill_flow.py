"""A drill that raises after injecting still replaces the platform's "last drill" with `.failed` and
keeps its partial journal; the error it reports carries no secret."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import flows.failover_drill as failover_drill_flow
from deployments.settings import PlatformSettings
from flows.failover_drill import DrillOptions, failover_drill
from tasks.drill_journal import DrillJournal
from tests.unit.drill_fakes import Drill, region_outage


class _Logger:
    def warning(self, *args: object) -> None:
        pass

    info = warning


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """The flow's Prefect side (tasks that need a server, events, logger) recorded instead."""
    seen: dict[str, list[Any]] = {"journals": [], "events": []}

    def publish(settings: PlatformSettings, journal: DrillJournal, evidence_storage: str) -> dict[str, str]:
        seen["journals"].append(journal)
        return {"journal": f"/state/drills/{journal.run}/journal.json"}

    monkeypatch.setattr(failover_drill_flow, "plan_drill", lambda settings, exp: SimpleNamespace(touches=[]))
    monkeypatch.setattr(failover_drill_flow, "execute_drill", failover_drill_flow.execute_drill.fn)
    monkeypatch.setattr(failover_drill_flow, "publish_evidence", publish)
    monkeypatch.setattr(failover_drill_flow, "emit_event", lambda **event: seen["events"].append(event))
    monkeypatch.setattr(failover_drill_flow, "get_run_logger", _Logger)
    return seen


@pytest.mark.parametrize("fails_in", ["observe", "rollback"])
def test_a_drill_that_raises_emits_failed_with_its_error_and_keeps_its_journal(
        fails_in: str, published: dict[str, list[Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = PlatformSettings(state_dir=tmp_path)
    drill = Drill(settings, fails_in=fails_in)
    drill.install(monkeypatch)
    monkeypatch.setattr(failover_drill_flow, "current_platform", lambda: settings)
    with pytest.raises(Exception) as raised:
        failover_drill.fn(experiment=region_outage(), options=DrillOptions(gateway_admin_socket="", evidence_storage=""))
    assert type(raised.value).__name__ == {"observe": "DrillInterrupted", "rollback": "RuntimeError"}[fails_in]

    [journal] = published["journals"]
    assert journal.status == "failed"
    assert {"inject", "session-failback", "drill-ended"} <= {e.name for e in journal.entries}
    [event] = published["events"]
    assert event["event"] == "llm-resilience.drill.failed"
    assert event["resource"]["prefect.resource.name"] == "region-outage"
    payload = event["payload"]
    assert payload["error"].startswith(type(raised.value).__name__)
    assert payload["evidence"] == {"journal": f"/state/drills/{journal.run}/journal.json"}
    secret = settings.s3_secret_access_key.get_secret_value()
    text = str(payload) + journal.model_dump_json()
    assert "hunter2" not in text and secret not in text


def test_a_finished_drill_emits_its_own_status_with_its_figures(published: dict[str, list[Any]]) -> None:
    journal = DrillJournal(experiment={"name": "crash"}, run="r", started_at=0.0, status="passed")
    failover_drill_flow.emit_drill_event("crash", journal, {"journal": "http://x/journal.json"})
    [event] = published["events"]
    assert event["event"] == "llm-resilience.drill.passed"
    assert event["resource"] == {"prefect.resource.id": "llm-resilience.drill.crash", "prefect.resource.name": "crash"}
    assert event["payload"] == {"reasons": [], "measurements": None, "slo": [], "evidence": {"journal": "http://x/journal.json"}}
