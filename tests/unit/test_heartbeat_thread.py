"""Flow runs do not wait for the heartbeat thread's next 1 s step, and heartbeats still flow."""

from __future__ import annotations

import logging
import threading
import types
from typing import Any

import prefect.flow_engine as flow_engine
import pytest

import flows  # noqa: F401  (installs the heartbeat context)
from flows.heartbeat_thread import install, send_heartbeats_without_join


class FakeEngine:
    """What Prefect's heartbeat context reads from a flow run engine."""

    heartbeat_seconds = 30
    flow_run = None
    logger = logging.getLogger("test-heartbeat")

    def __init__(self) -> None:
        self.beats = 0
        self.first_beat = threading.Event()

    def _build_heartbeat_event_template(self) -> tuple[dict, list]:
        return {}, []

    def _emit_flow_run_heartbeat(self, resource: Any, related: Any) -> None:
        self.beats += 1
        self.first_beat.set()


def test_importing_flows_installs_it_once() -> None:
    assert flow_engine._send_heartbeats is send_heartbeats_without_join
    assert install() and install()  # idempotent
    assert flow_engine._send_heartbeats is send_heartbeats_without_join


def test_the_run_does_not_join_the_heartbeat_thread_which_beats_then_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    step = threading.Event()  # the thread's 1 s sleeps last until the test lets them end
    joined: list[str] = []

    class Thread(threading.Thread):
        def join(self, timeout: float | None = None) -> None:
            joined.append(self.name)
            super().join(timeout)

    monkeypatch.setattr(flow_engine, "time", types.SimpleNamespace(sleep=lambda s: step.wait(30)))
    monkeypatch.setattr(flow_engine, "threading", types.SimpleNamespace(Event=threading.Event, Thread=Thread))
    engine = FakeEngine()
    before = set(threading.enumerate())
    with flow_engine._send_heartbeats(engine):
        assert engine.first_beat.wait(30)  # a heartbeat as the run starts
        (heartbeat,) = set(threading.enumerate()) - before
    assert joined == []  # the run's end did not wait for it
    assert heartbeat.is_alive()  # still in its step: the run ended without waiting for it
    step.set()
    heartbeat.join(30)
    assert not heartbeat.is_alive() and engine.beats == 1  # stopped at its step, no beat after the run
