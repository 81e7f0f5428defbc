"""Concurrency that backs off under throttling and recovers after (AIMD), plus wire counters.

botocore's adaptive retry mode already retries 503 SlowDown / 429 / 5xx / connection resets with
exponential backoff and jitter and rate-limits the client; this limiter also shrinks how many
objects are in flight at once, so a throttled store sees fewer parallel requests, not just slower ones.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"})


class AdaptiveLimiter:
    """At most ``limit`` holders at once; ``limit`` halves on throttling (at most every
    ``cooldown_s``) and grows by about one per ``limit`` successes, up to ``max_limit``."""

    def __init__(self, max_limit: int, *, min_limit: int = 1, cooldown_s: float = 0.5) -> None:
        self.max_limit = max(1, max_limit)
        self.min_limit = max(1, min(min_limit, self.max_limit))
        self.cooldown_s = cooldown_s
        self._limit = float(self.max_limit)
        self._in_flight = 0
        self._last_cut = 0.0
        self._cond = threading.Condition()
        self.lowest = self.max_limit
        self.cuts = 0

    @property
    def limit(self) -> int:
        return int(self._limit)

    def acquire(self) -> None:
        with self._cond:
            while self._in_flight >= int(self._limit):
                self._cond.wait(0.5)
            self._in_flight += 1

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()

    def __enter__(self) -> AdaptiveLimiter:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def on_throttle(self) -> None:
        with self._cond:
            now = time.monotonic()
            if now - self._last_cut < self.cooldown_s:
                return
            self._last_cut = now
            self._limit = max(float(self.min_limit), self._limit / 2)
            self.cuts += 1
            self.lowest = min(self.lowest, int(self._limit))

    def on_success(self) -> None:
        with self._cond:
            if self._limit < self.max_limit:
                self._limit = min(float(self.max_limit), self._limit + 1.0 / max(self._limit, 1.0))
                self._cond.notify_all()


@dataclass
class WireStats:
    """What the wire did during a batch: retried requests, throttles, connection errors."""

    retries: int = 0
    throttles: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    limiter: AdaptiveLimiter | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, response: Any = None, caught_exception: Exception | None = None, **_: Any) -> None:
        """botocore ``needs-retry`` hook: counts, never decides (returns None)."""
        throttled = server_error = conn_error = False
        if caught_exception is not None:
            conn_error = True
        elif response is not None:
            http, parsed = response
            status = getattr(http, "status_code", 200)
            code = (parsed or {}).get("Error", {}).get("Code", "")
            if status == 429 or code in THROTTLE_CODES:
                throttled = True
            elif status >= 500:
                server_error = True
        if not (throttled or server_error or conn_error):
            return None
        with self._lock:
            self.retries += 1
            self.throttles += throttled
            self.server_errors += server_error
            self.connection_errors += conn_error
        if self.limiter is not None and (throttled or conn_error or server_error):
            self.limiter.on_throttle()
        return None

    def add_retry(self) -> None:
        with self._lock:
            self.retries += 1
