"""The monitor's time-series store: one SQLite file in the platform's state dir.

Why SQLite: it ships with Python, survives restarts, handles the concurrent writer (a monitor
run) and readers (the /metrics exporter, the next run) with WAL, and a week of samples at a
5-minute schedule is a few hundred kilobytes. Rows are ``(ts, run_id, component, metric,
value)``; threshold breaches get their own table so counters survive restarts. Rows older than
the retention are dropped by every write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tasks.thresholds import Breach, Sample

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    ts REAL NOT NULL, run_id TEXT NOT NULL, component TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_series ON samples (component, metric, ts);
CREATE TABLE IF NOT EXISTS breaches (
    ts REAL NOT NULL, run_id TEXT NOT NULL, component TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL NOT NULL, threshold TEXT NOT NULL
);
"""


def _ts(at: datetime) -> float:
    return at.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class MetricsStore:
    def __init__(self, path: Path | str, retention: timedelta = timedelta(days=7)) -> None:
        self.path = Path(path)
        self.retention = retention

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            with db:
                yield db
        finally:
            db.close()

    def record(self, run_id: str, samples: Iterable[Sample], breaches: Iterable[Breach] = (), *, at: datetime) -> int:
        """Store one run's samples and breaches; drop what is older than the retention."""
        rows = [(_ts(s.at), run_id, s.component, s.metric, float(s.value)) for s in samples]
        with self._db() as db:
            db.executemany("INSERT INTO samples VALUES (?, ?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT INTO breaches VALUES (?, ?, ?, ?, ?, ?)",
                [(_ts(at), run_id, b.component, b.metric, b.value, b.threshold) for b in breaches],
            )
            cutoff = _ts(at - self.retention)
            db.execute("DELETE FROM samples WHERE ts < ?", (cutoff,))
            db.execute("DELETE FROM breaches WHERE ts < ?", (cutoff,))
        return len(rows)

    def since(self, since: datetime, *, metric: str | None = None, component: str | None = None) -> list[Sample]:
        query = "SELECT ts, component, metric, value FROM samples WHERE ts >= ?"
        args: list[object] = [_ts(since)]
        if metric is not None:
            query += " AND metric = ?"
            args.append(metric)
        if component is not None:
            query += " AND component = ?"
            args.append(component)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY ts", args).fetchall()
        return [Sample(at=_dt(ts), component=c, metric=m, value=v) for ts, c, m, v in rows]

    def breach_counts(self) -> dict[tuple[str, str], int]:
        """(component, metric) -> breaches kept (within the retention)."""
        with self._db() as db:
            rows = db.execute("SELECT component, metric, COUNT(*) FROM breaches GROUP BY component, metric").fetchall()
        return {(c, m): n for c, m, n in rows}

    def run_count(self) -> int:
        with self._db() as db:
            return db.execute("SELECT COUNT(DISTINCT run_id) FROM samples").fetchone()[0]


def hourly_trend(samples: list[Sample], now: datetime, hours: int = 24) -> list[float | None]:
    """Mean value per hour for the last ``hours`` hours, oldest first; None where nothing was recorded."""
    buckets: list[list[float]] = [[] for _ in range(hours)]
    start = now - timedelta(hours=hours)
    for s in samples:
        if s.at < start or s.at > now:
            continue
        index = min(hours - 1, int((s.at - start).total_seconds() // 3600))
        buckets[index].append(s.value)
    return [sum(b) / len(b) if b else None for b in buckets]
