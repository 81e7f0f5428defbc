"""How far one destination's copy has got, batch by batch: for the progress artifact (a bar in the
Prefect UI) and one log line per batch, so a run that takes hours shows it is moving."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import httpx

__all__ = ["CopyProgress", "human_bytes", "show_progress"]


class _Outcome(Protocol):
    size: int
    status: str


def human_bytes(n: int) -> str:
    """1023 B, 1.5 KiB, 12.0 MiB, 3.2 GiB, 1.1 TiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@dataclass
class CopyProgress:
    """Objects and bytes done (copied, failed or vanished: nothing left to do for them this run)."""

    total_objects: int
    total_bytes: int
    total_batches: int
    batches: int = 0
    objects: int = 0
    bytes: int = 0
    failed: int = 0

    def add(self, outcomes: Iterable[_Outcome]) -> None:
        """One batch's outcomes."""
        self.batches += 1
        for outcome in outcomes:
            self.objects += 1
            self.bytes += outcome.size
            self.failed += outcome.status == "failed"

    @property
    def percent(self) -> float:
        """By bytes (what takes the time); by objects when there are no bytes to copy."""
        if self.total_bytes:
            done, total = self.bytes, self.total_bytes
        else:
            done, total = self.objects, self.total_objects
        return 100.0 if total == 0 else min(100.0, 100.0 * done / total)

    def line(self, destination: str) -> str:
        return (
            f"{destination}: batch {self.batches}/{self.total_batches}, {self.objects:,}/{self.total_objects:,} objects, "
            f"{human_bytes(self.bytes)}/{human_bytes(self.total_bytes)} ({self.percent:.0f}%), {self.failed:,} failed"
        )


def show_progress(
    progress: CopyProgress, destination: str, logger: logging.Logger | logging.LoggerAdapter[Any],
    bar: UUID | None, update: Callable[[UUID, float], Any],
) -> None:
    """Log the batch's line and move the bar. A bar the API failed to move is a warning, never a
    reason to fail a run whose copies are done."""
    logger.info(progress.line(destination))
    if bar is None:
        return
    try:
        update(bar, progress.percent)
    except httpx.HTTPError as exc:
        logger.warning("%s: progress bar not updated (%s); the copy goes on", destination, exc)
