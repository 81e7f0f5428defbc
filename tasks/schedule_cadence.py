"""How often a deployment's active schedules fire: pure, from Prefect's schedule objects.

Automations that count a scheduled flow's events (the failover fires after N consecutive
`health.down` reports) need the cadence the deployment runs at now, which an operator may have
changed in the UI, not the one the code was written for. Interval, cron and RRule schedules are
all sampled the same way: their next fire times are merged, and the typical (median) gap between
neighbours is the cadence, so several active schedules count together and a cron with a nightly
pause is not judged by its longest gap.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim
from dateutil.rrule import rrulestr
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

SAMPLE = 24


class UnknownSchedule(ValueError):
    """A schedule kind this module cannot sample."""


def next_fires(schedule: Any, after: datetime, count: int = SAMPLE) -> list[datetime]:
    """The first ``count`` fire times strictly after ``after`` (timezone-aware, UTC)."""
    after = after.astimezone(timezone.utc)
    if isinstance(schedule, IntervalSchedule):
        step = timedelta(seconds=schedule.interval.total_seconds())
        anchor = datetime.fromtimestamp(schedule.anchor_date.timestamp(), timezone.utc)  # not pendulum's
        skipped = max(0, (after - anchor) // step + 1)
        first = anchor + skipped * step
        return [first + i * step for i in range(count)]
    if isinstance(schedule, CronSchedule):
        zone = ZoneInfo(schedule.timezone or "UTC")
        it = CronSim(schedule.cron, after.astimezone(zone))
        return [next(it).astimezone(timezone.utc) for _ in range(count)]
    if isinstance(schedule, RRuleSchedule):
        zone = ZoneInfo(schedule.timezone or "UTC")
        rule = rrulestr(schedule.rrule, dtstart=after.astimezone(zone), forceset=True)
        fires, t = [], after.astimezone(zone)
        while len(fires) < count:
            t = rule.after(t)
            if t is None:
                break
            fires.append(t.astimezone(timezone.utc))
        return fires
    raise UnknownSchedule(f"schedule of type {type(schedule).__name__} cannot be sampled")


def cadence(schedules: Iterable[tuple[Any, bool]], now: datetime, count: int = SAMPLE) -> timedelta | None:
    """The median gap between the merged next fire times of the active schedules; None when no
    active schedule fires at least twice more (nothing to count events against)."""
    fires = sorted({t for schedule, active in schedules if active for t in next_fires(schedule, now, count)})
    gaps = [b - a for a, b in zip(fires, fires[1:])]
    return statistics.median_low(gaps) if gaps else None
