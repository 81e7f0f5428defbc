"""Scheduled failover drills never run beside each other or beside the nightly prompt regression:
they all act on region-a, and a drill's errors could make the regression roll `production` back."""

from __future__ import annotations

import asyncio
import datetime as dt
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.server.schemas.schedules import CronSchedule

from tasks.drill_experiment import load_experiment

ROOT = Path(__file__).resolve().parents[2]
# A drill holds its fault at most for its lease; with warm-up, recovery and failback it stays well
# under this. The regression (3 cases x 3 samples x 2 versions) gets a generous hour.
DRILL_BUDGET = dt.timedelta(minutes=15)
REGRESSION_BUDGET = dt.timedelta(minutes=60)
TWO_WEEKS_FROM = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)  # a Monday: every weekday, twice


def _deployments() -> list[dict[str, Any]]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def _drills() -> list[dict[str, Any]]:
    return [d for d in _deployments() if "drill" in d.get("tags", []) and d.get("schedules")]


def _regressions() -> list[dict[str, Any]]:
    return [d for d in _deployments()
            if d["entrypoint"].endswith(":prompt_regression") and d.get("schedules")]


def _runs(deployment: dict[str, Any], budget: dt.timedelta) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, start + budget) of every run the deployment's cron schedules start in two weeks,
    computed by Prefect's own scheduler (day-of-month/day-of-week semantics included)."""
    runs = []
    for s in deployment["schedules"]:
        schedule = CronSchedule(cron=s["cron"], timezone=s.get("timezone") or "UTC")
        dates = asyncio.run(schedule.get_dates(start=TWO_WEEKS_FROM, end=TWO_WEEKS_FROM + dt.timedelta(days=14)))
        runs += [(d, d + budget) for d in dates]
    return runs


def test_the_schedules_under_test_exist() -> None:
    assert len(_drills()) == len(list((ROOT / "deployments/experiments").glob("*.yaml")))
    assert [d["name"] for d in _regressions()] == ["prompt-regression-nightly"]


@pytest.mark.parametrize("drill", _drills(), ids=lambda d: d["name"])
def test_a_drill_fits_its_budget(drill: dict[str, Any]) -> None:
    exp = load_experiment(ROOT / drill["parameters"]["experiment_file"])
    assert exp.rollback is not None
    worst = 3 * exp.warmup_s + exp.rollback.lease_s + 2 * exp.recovery_deadline_s + exp.steady_state.window_s
    assert dt.timedelta(seconds=worst) < DRILL_BUDGET


def test_no_drill_overlaps_another_drill_or_the_prompt_regression() -> None:
    scheduled = [(d["name"], _runs(d, DRILL_BUDGET)) for d in _drills()]
    scheduled += [(d["name"], _runs(d, REGRESSION_BUDGET)) for d in _regressions()]
    overlaps = [(a, b, start_a.isoformat()) for (a, runs_a), (b, runs_b) in combinations(scheduled, 2)
                for start_a, end_a in runs_a for start_b, end_b in runs_b if start_a < end_b and start_b < end_a]
    assert not overlaps


def test_the_nightly_regression_calls_the_model_every_night() -> None:
    """A response cache would replay the first night's answers: the served model could change
    behind the same name and the nightly would never see it."""
    (nightly,) = _regressions()
    assert nightly["parameters"]["request"]["runner"].get("cache_dir") is None
