"""Stop a copy that the store refuses object after object.

Credentials that may list and read but not write, a bucket deleted or a key revoked mid-run: the
preflight (HEAD bucket) passes, and then every object fails the same way. Without a breaker a run
over millions of keys sends a refused request for each and lists each as failed; with it the run
stops after ``threshold`` refusals in a row, says why once, and counts the objects it did not try
as pending (the next run tries them all again). One copied object, or a failure of another kind,
ends the streak: a few keys a policy denies among many it allows are per-object failures, not a
reason to stop.
"""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ["REFUSALS", "CopyBreaker"]

# Error codes no retry within a run can change: the credentials, the key or the bucket are wrong.
REFUSALS = frozenset({
    "AccessDenied", "AllAccessDisabled", "AccountProblem", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "NoSuchBucket", "InvalidToken", "ExpiredToken",
})


class _Outcome(Protocol):
    key: str
    status: str
    code: str | None
    operation: str | None
    error: str | None


class CopyBreaker:
    """Counts refusals in a row across a batch's workers (thread-safe); ``reason`` is set once the
    count reaches ``threshold`` (0: never) and stays set."""

    def __init__(self, threshold: int) -> None:
        if threshold < 0:
            raise ValueError(f"abort_after_refusals must be 0 or more, got {threshold}")
        self.threshold = threshold
        self.in_a_row = 0
        self.reason: str | None = None
        self._lock = threading.Lock()

    def record(self, outcome: _Outcome) -> None:
        with self._lock:
            if outcome.status == "failed" and outcome.code in REFUSALS:
                self.in_a_row += 1
                if self.threshold and self.reason is None and self.in_a_row >= self.threshold:
                    self.reason = (f"{self.in_a_row} objects in a row refused by the store ({outcome.operation or 'request'}: "
                                   f"{outcome.error}; the last: {outcome.key}); the rest were not attempted")
            elif outcome.status in {"copied", "failed"}:
                self.in_a_row = 0
