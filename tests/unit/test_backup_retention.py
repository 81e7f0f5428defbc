"""Retention over a simulated calendar: the keep-set matches restic's `forget --keep-*` semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tasks.backup_retention import RetentionPolicy, apply_retention


def calendar() -> list[tuple[str, datetime]]:
    """Snapshots every 6 hours from 2026-01-01 00:00 to 2026-03-31 18:00 (UTC), named by time."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    t = start
    while t < datetime(2026, 4, 1, tzinfo=UTC):
        out.append((t.strftime("%m-%d %H"), t))
        t += timedelta(hours=6)
    return out


def test_keep_last_only() -> None:
    kept = apply_retention(calendar(), RetentionPolicy(keep_last=3))
    assert sorted(kept) == ["03-31 06", "03-31 12", "03-31 18"]


def test_daily_weekly_monthly_keep_exact_set() -> None:
    kept = apply_retention(calendar(), RetentionPolicy(keep_last=2, keep_daily=3, keep_weekly=2, keep_monthly=3))
    # last 2: 03-31 18, 03-31 12; daily: newest of 03-31, 03-30, 03-29; weekly (ISO weeks):
    # week of 03-30 (Mon) -> 03-31 18, week of 03-23 -> 03-29 18 (Sunday); monthly: 03-31 18, 02-28 18, 01-31 18.
    assert sorted(kept) == ["01-31 18", "02-28 18", "03-29 18", "03-30 18", "03-31 12", "03-31 18"]
    assert kept["03-31 18"] == ["last", "daily", "weekly", "monthly"]
    assert kept["03-29 18"] == ["daily", "weekly"]


def test_hourly_with_gaps_counts_only_hours_that_have_snapshots() -> None:
    kept = apply_retention(calendar(), RetentionPolicy(keep_hourly=4))
    assert sorted(kept) == ["03-31 00", "03-31 06", "03-31 12", "03-31 18"]


def test_more_rules_than_snapshots_keeps_all_and_empty_policy_keeps_all() -> None:
    few = calendar()[:3]
    assert set(apply_retention(few, RetentionPolicy(keep_last=10, keep_daily=10))) == {s for s, _ in few}
    assert set(apply_retention(few, RetentionPolicy(keep_daily=10))) == {few[-1][0]}  # one day: its newest
    assert set(apply_retention(few, RetentionPolicy())) == {s for s, _ in few}


def test_order_of_input_does_not_matter() -> None:
    snaps = calendar()
    policy = RetentionPolicy(keep_weekly=5)
    assert apply_retention(snaps, policy) == apply_retention(list(reversed(snaps)), policy)
