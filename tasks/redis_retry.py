"""The retry policy of every Redis client here: a timeout is an answer, a dropped connection gets one retry.

A ``redis.Redis(host=..., port=...)`` client of redis-py 8 retries each command 10 times on
``ConnectionError`` *and* ``TimeoutError``, with up to 1 s of jittered backoff between attempts
(``from_url`` clients do not: the defaults differ by constructor). Against a hung server
(SIGSTOP, a partition) a 0.5 s ``socket_timeout`` therefore surfaced after ~10 s (measured:
10.05 s sync, 10.18 s asyncio). In the drills that held the session failover back by ~9 s and
stalled the load (a region outage "failed over" in 9.3 s), and the failover flow and the health
probe's primary check waited as long. The timeout a caller sets is what it is prepared to wait,
so it is not retried. A connection the server closed (a restart, a failback) is retried once,
at once, on a fresh connection; ``BusyLoadingError`` is such a ``ConnectionError`` too. Every
client gets the policy explicitly, whichever constructor builds it.
"""

from __future__ import annotations

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

RETRIES = 1


def bounded_retry() -> Retry:
    """For ``redis.Redis`` (and ``from_url``): pass as ``retry=``."""
    return Retry(NoBackoff(), RETRIES, supported_errors=(RedisConnectionError,))


def bounded_async_retry() -> AsyncRetry:
    """For ``redis.asyncio.Redis``: pass as ``retry=``."""
    return AsyncRetry(NoBackoff(), RETRIES, supported_errors=(RedisConnectionError,))
