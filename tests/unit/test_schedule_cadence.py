"""The cadence of a deployment's active schedules, as the failover automation's window needs it."""

from datetime import datetime, timedelta, timezone

import pytest
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

from tasks.schedule_cadence import UnknownSchedule, cadence, next_fires

NOW = datetime(2026, 11, 25, 10, 7, 30, tzinfo=timezone.utc)


def every(seconds: float, anchor: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc)) -> IntervalSchedule:
    return IntervalSchedule(interval=timedelta(seconds=seconds), anchor_date=anchor)


def test_interval_fires_on_its_anchor_grid_after_now() -> None:
    fires = next_fires(every(300), NOW, 3)
    assert fires == [datetime(2026, 11, 25, 10, 10, tzinfo=timezone.utc) + i * timedelta(minutes=5) for i in range(3)]


def test_an_anchor_in_the_future_still_gives_the_interval() -> None:
    assert cadence([(every(600, anchor=NOW + timedelta(days=2)), True)], NOW) == timedelta(minutes=10)


@pytest.mark.parametrize(("schedule", "expected"), [
    (every(300), timedelta(minutes=5)),
    (every(45), timedelta(seconds=45)),
    (CronSchedule(cron="*/10 * * * *"), timedelta(minutes=10)),
    # working hours only: the nightly pause is one gap among many, not the cadence
    (CronSchedule(cron="*/15 8-17 * * *", timezone="Europe/Berlin"), timedelta(minutes=15)),
    (RRuleSchedule(rrule="FREQ=HOURLY;INTERVAL=2"), timedelta(hours=2)),
])
def test_cadence_of_one_active_schedule(schedule, expected: timedelta) -> None:  # noqa: ANN001
    assert cadence([(schedule, True)], NOW) == expected


def test_inactive_schedules_do_not_count() -> None:
    assert cadence([(every(60), False), (every(600), True)], NOW) == timedelta(minutes=10)
    assert cadence([(every(60), False)], NOW) is None
    assert cadence([], NOW) is None


def test_two_active_schedules_count_together() -> None:
    offset = datetime(2026, 1, 1, 0, 2, 30, tzinfo=timezone.utc)
    assert cadence([(every(300), True), (every(300, anchor=offset), True)], NOW) == timedelta(seconds=150)


def test_a_schedule_that_fires_once_more_has_no_cadence() -> None:
    assert cadence([(RRuleSchedule(rrule="DTSTART:20261126T000000Z\nRRULE:FREQ=DAILY;COUNT=1"), True)], NOW) is None


def test_an_unknown_schedule_kind_is_named() -> None:
    with pytest.raises(UnknownSchedule, match="str"):
        next_fires("every five minutes", NOW)
