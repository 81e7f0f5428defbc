"""The figures of a replication run: per destination and in total, as a model, a table and events."""

from __future__ import annotations

import datetime as dt
import math

from pydantic import BaseModel, Field


class FailedObject(BaseModel):
    key: str
    size: int
    error: str


class LagFigures(BaseModel):
    """Replication lag: source write time -> verified at the destination, in seconds."""

    count: int = 0
    p50_s: float | None = None
    p99_s: float | None = None
    max_s: float | None = None

    @classmethod
    def of(cls, lags: list[float]) -> LagFigures:
        if not lags:
            return cls()
        ordered = sorted(lags)
        return cls(count=len(ordered), p50_s=percentile(ordered, 50), p99_s=percentile(ordered, 99), max_s=ordered[-1])


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class DestinationReport(BaseModel):
    source: str
    destination: str
    copied_objects: int = 0
    copied_bytes: int = 0
    deleted_objects: int = 0
    deleted_bytes: int = 0
    quarantined_objects: int = 0
    skipped_objects: int = 0  # already identical at the destination
    skipped_bytes: int = 0
    vanished_objects: int = 0  # deleted at the source between listing and copy
    failed: list[FailedObject] = Field(default_factory=list)
    # not tried: the store refused object after object, so the copy stopped (``aborted`` says why)
    not_attempted_objects: int = 0
    not_attempted_bytes: int = 0
    aborted: str | None = None
    # copied and checked at the destination, but nothing the source stored could check the bytes
    # read (a source written in parts whose part size its store does not report)
    unchecked_reads: list[str] = Field(default_factory=list)
    pending_objects: int = 0  # still not replicated when the run ended
    pending_bytes: int = 0
    lag: LagFigures = Field(default_factory=LagFigures)
    resumed_parts: int = 0
    retries: int = 0
    throttles: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    lowest_concurrency: int | None = None
    source_listing_complete: bool = True
    destination_listing_complete: bool = True
    deletes_blocked: str | None = None
    duration_s: float = 0.0

    @property
    def failed_objects(self) -> int:
        return len(self.failed)

    @property
    def failed_bytes(self) -> int:
        return sum(f.size for f in self.failed)


class ReplicationReport(BaseModel):
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    destinations: list[DestinationReport] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(not d.failed and d.aborted is None and d.deletes_blocked is None and d.source_listing_complete
                   for d in self.destinations)

    def total(self, name: str) -> int:
        return sum(getattr(d, name) for d in self.destinations)

    def table_rows(self) -> list[dict[str, object]]:
        rows = []
        for d in self.destinations:
            rows.append({
                "source": d.source, "destination": d.destination,
                "copied": d.copied_objects, "copied_MiB": round(d.copied_bytes / 2**20, 2),
                "deleted": d.deleted_objects, "deleted_MiB": round(d.deleted_bytes / 2**20, 2),
                "skipped": d.skipped_objects, "skipped_MiB": round(d.skipped_bytes / 2**20, 2),
                "failed": d.failed_objects, "failed_MiB": round(d.failed_bytes / 2**20, 2),
                "not_attempted": d.not_attempted_objects,
                "pending": d.pending_objects, "pending_MiB": round(d.pending_bytes / 2**20, 2),
                "unchecked_reads": len(d.unchecked_reads),
                "lag_p50_s": _r(d.lag.p50_s), "lag_p99_s": _r(d.lag.p99_s), "lag_max_s": _r(d.lag.max_s),
                "retries": d.retries, "throttles": d.throttles,
                "deletes_blocked": d.deletes_blocked or "", "aborted": d.aborted or "",
                "duration_s": round(d.duration_s, 2),
            })
        return rows

    def failed_rows(self) -> list[dict[str, object]]:
        return [
            {"destination": d.destination, "key": f.key, "size": f.size, "error": f.error}
            for d in self.destinations for f in d.failed
        ]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
