"""Flow runs return when their work ends, not on the heartbeat thread's next whole second.

Prefect 3.8's sync flow engine gives every flow run a heartbeat thread (on by default; the
zombie automation needs its events) that sleeps in 1 s steps, and joins that thread when the
run's work ends. So every flow run returned up to 1 s after its work: a replication run with
0.2 s of work took 1.07 s, 0.8 s of it in that join. Prefect's async engine already leaves the
thread unjoined (``join_on_exit=False``); ``install`` makes sync flows do the same.

The thread itself is untouched: it sends the same heartbeats while the run runs, and stops at
its next step once the run's work has ended, without sending another (it checks its stop event
first). It is a daemon thread, so it never holds a process open.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import prefect.flow_engine as flow_engine

__all__ = ["install", "send_heartbeats_without_join"]

_MARK = "_llmr_upstream"


def _upstream() -> Callable[..., AbstractContextManager[None]]:
    current = flow_engine._send_heartbeats
    return getattr(current, _MARK, current)


@contextmanager
def send_heartbeats_without_join(engine: Any, join_on_exit: bool = True) -> Generator[None, None, None]:  # noqa: ARG001
    """Prefect's own heartbeat context, never waiting for its thread on exit."""
    with _upstream()(engine, join_on_exit=False):
        yield


def install() -> bool:
    """Route Prefect's sync flow engine through ``send_heartbeats_without_join``. Idempotent.
    False, leaving Prefect as it is, when this Prefect's heartbeat context has no
    ``join_on_exit`` switch (a release this was not written for)."""
    upstream = _upstream()
    if "join_on_exit" not in inspect.signature(upstream).parameters:
        return False
    if flow_engine._send_heartbeats is not send_heartbeats_without_join:
        setattr(send_heartbeats_without_join, _MARK, upstream)
        flow_engine._send_heartbeats = send_heartbeats_without_join
    return True
