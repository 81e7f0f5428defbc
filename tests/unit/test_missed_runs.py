"""Which scheduled runs count as missed while the platform was down, and where the check runs."""

from __future__ import annotations

import datetime as dt

from deployments.settings import PlatformSettings
from deployments.stack.components import build_components
from deployments.stack.missed_runs import missed

NOW = dt.datetime(2026, 11, 24, 16, 0, tzinfo=dt.UTC)


def run(name: str, minutes_ago: float, state: str = "SCHEDULED") -> dict:
    due = (NOW - dt.timedelta(minutes=minutes_ago)).isoformat()
    return {"id": name, "state": {"type": state}, "expected_start_time": due, "next_scheduled_start_time": due}


def test_only_scheduled_runs_later_than_the_grace_are_missed() -> None:
    runs = [run("hours-late", 300), run("just-over", 10.5), run("just-under", 9.5), run("due-later", -30),
            run("running", 300, state="RUNNING"), run("pending", 300, state="PENDING")]
    assert [r["id"] for r in missed(runs, NOW, grace_s=600)] == ["hours-late", "just-over"]
    assert [r["id"] for r in missed(runs, NOW, grace_s=0)] == ["hours-late", "just-over", "just-under"]


def test_a_rescheduled_run_is_judged_by_its_next_start() -> None:
    retried = run("retrying", 300) | {"next_scheduled_start_time": (NOW + dt.timedelta(minutes=1)).isoformat()}
    assert missed([retried], NOW, grace_s=600) == []


def test_the_first_worker_cancels_missed_runs_before_it_starts(tmp_path) -> None:  # noqa: ANN001
    settings = PlatformSettings(state_dir=tmp_path, workers=3)
    workers = {c.name: c for c in build_components(settings) if c.name.startswith("prefect-worker")}
    assert workers["prefect-worker"].prepare is not None  # the first worker: before any worker takes a run
    assert workers["prefect-worker-2"].prepare is None and workers["prefect-worker-3"].prepare is None
