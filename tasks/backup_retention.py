"""Which snapshots a retention policy keeps (restic's `forget --keep-*` semantics), as pure logic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from pydantic import Field

from tasks.strict_input import StrictInput


class RetentionPolicy(StrictInput):
    """How many snapshots to keep per rule; a snapshot kept by any rule is kept."""

    keep_last: int = Field(default=0, ge=0, description="The n newest snapshots.")
    keep_hourly: int = Field(default=0, ge=0, description="Newest snapshot of each of the last n hours that have one.")
    keep_daily: int = Field(default=0, ge=0, description="Newest snapshot of each of the last n days that have one.")
    keep_weekly: int = Field(default=0, ge=0, description="Newest snapshot of each of the last n ISO weeks that have one.")
    keep_monthly: int = Field(default=0, ge=0, description="Newest snapshot of each of the last n months that have one.")

    @property
    def empty(self) -> bool:
        return not any((self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly, self.keep_monthly))


def _buckets(policy: RetentionPolicy) -> list[tuple[str, int, Callable[[datetime], object]]]:
    return [
        ("last", policy.keep_last, lambda t: id(t)),  # every snapshot is its own bucket
        ("hourly", policy.keep_hourly, lambda t: (t.year, t.month, t.day, t.hour)),
        ("daily", policy.keep_daily, lambda t: (t.year, t.month, t.day)),
        ("weekly", policy.keep_weekly, lambda t: t.isocalendar()[:2]),
        ("monthly", policy.keep_monthly, lambda t: (t.year, t.month)),
    ]


def apply_retention(snapshots: Sequence[tuple[str, datetime]], policy: RetentionPolicy) -> dict[str, list[str]]:
    """Map each kept snapshot id to the rules that keep it; ids missing from the map are forgotten.

    An empty policy keeps everything (prune must never delete by omission).
    """
    ordered = sorted(snapshots, key=lambda s: s[1], reverse=True)
    if policy.empty:
        return {sid: ["no-policy"] for sid, _ in ordered}
    kept: dict[str, list[str]] = {}
    for rule, count, bucket_of in _buckets(policy):
        remaining, last = count, object()
        for index, (sid, when) in enumerate(ordered):
            if remaining <= 0:
                break
            bucket = index if rule == "last" else bucket_of(when)
            if bucket != last:
                kept.setdefault(sid, []).append(rule)
                remaining -= 1
                last = bucket
    return kept
