"""Exponential backoff with jitter, for Prefect task options and for loops inside a task."""

from __future__ import annotations

import random
from collections.abc import Callable

from prefect.tasks import exponential_backoff

from tasks.errors import NonRetryableError


def backoff_delays(attempts: int, *, base_s: float, cap_s: float = 30.0, jitter: float = 0.5) -> list[float]:
    """Delays to sleep between ``attempts`` tries: base, 2*base, 4*base ... each +/- jitter, capped."""
    delays = []
    for n in range(max(attempts - 1, 0)):
        delay = min(cap_s, base_s * (2**n))
        delays.append(max(0.0, delay * (1 + random.uniform(-jitter, jitter))))
    return delays


def retry_unless_non_retryable(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's hook signature
    """``retry_condition_fn`` for tasks: bad input and auth errors fail at once."""
    try:
        state.result()
    except NonRetryableError:
        return False
    except Exception:
        return True
    return True


def network_task_options(retries: int = 3, backoff_factor: float = 1.0) -> dict[str, object]:
    """Task options every network-touching task uses (DESIGN.md §5)."""
    return {
        "retries": retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=backoff_factor),
        "retry_jitter_factor": 0.5,
        "retry_condition_fn": retry_unless_non_retryable,
    }


RetryCondition = Callable[..., bool]
