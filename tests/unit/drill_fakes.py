"""Test doubles for running ``DrillRunner`` without a platform: a fault, a load generator and Redis
commands that only record what happened, in order, in one shared ``steps`` list."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

import tasks.drill_runner as drill_runner
from deployments.settings import PROJECT_ROOT, PlatformSettings
from tasks.drill_experiment import Experiment, load_experiment
from tasks.drill_runner import DrillInterrupted, DrillRunner

SECRET_URL = "s3://admin:hunter2@127.0.0.1:9101/llm-resilience-region-a"


def region_outage() -> Experiment:
    return load_experiment(PROJECT_ROOT / "deployments/experiments/region-outage.yaml")


@dataclass
class Drill:
    """What one faked drill does: ``fails_in`` says where it raises (``observe``: a SIGTERM
    arrives while the fault is held; ``rollback``: the undo fails); ``failback_fails`` breaks the
    session switchover."""

    settings: PlatformSettings
    fails_in: str | None = None
    failback_fails: bool = False
    steps: list[str] = field(default_factory=list)
    load: Any = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        drill = self

        class Fault:
            def describe(self) -> str:
                return "hang on llm-region-a, redis-region-a, s3-region-a"

            def is_active(self) -> bool:
                return False

            def inject(self, lease_s: float) -> None:
                drill.steps.append("inject")
                drill.load.router.failed_over = True  # the load's SessionRouter promoted region-b

            def rollback(self) -> None:
                drill.steps.append("rollback")
                if drill.fails_in == "rollback":
                    key = drill.settings.s3_secret_access_key.get_secret_value()
                    raise RuntimeError(f"s3-region-a did not resume ({SECRET_URL}, key {key})")

        class Load:
            def __init__(self, **_: object) -> None:
                drill.load = self
                self.router = SimpleNamespace(failed_over=False, primary=None, secondary=None)
                self.error, self.skipped, self.acknowledged, self.actions = None, 0, {}, []
                self._lock = threading.Lock()

            def start(self) -> None:
                pass

            def stop(self) -> None:
                drill.steps.append("load stopped")

            def snapshot(self) -> list:
                return []

            def missing_turns(self) -> tuple[int, list[str]]:
                return 0, []

            def cleanup(self) -> None:
                pass

            def records_as_dicts(self) -> list[dict]:
                return []

        def observe(runner: DrillRunner, t0: float, load: object, journal: object) -> list[str]:
            if drill.fails_in == "observe":
                raise DrillInterrupted("SIGTERM received (cancelled?): rolling the fault back")
            return []

        def switchover(old: object, new: object, timeout_s: float) -> float:
            drill.steps.append("switchover")
            if drill.failback_fails:
                raise ConnectionError("redis-region-b did not answer within 2 s")
            return 0.01

        plan = SimpleNamespace(touches=["llm-region-a", "redis-region-a", "s3-region-a"], actions=[])
        monkeypatch.setattr(drill_runner, "plan_experiment", lambda settings, exp: (plan, Fault()))
        monkeypatch.setattr(drill_runner, "LoadGenerator", Load)
        monkeypatch.setattr(drill_runner, "follow", lambda replica, primary: drill.steps.append("follow"))
        monkeypatch.setattr(drill_runner, "switchover", switchover)
        monkeypatch.setattr(DrillRunner, "_steady_state_before", lambda runner, started, load: [])
        monkeypatch.setattr(DrillRunner, "_observe_fault", observe)
        monkeypatch.setattr(DrillRunner, "_await_recovery", lambda runner, t_rb, load, journal: ([], True))

    def runner(self) -> DrillRunner:
        return DrillRunner(self.settings, region_outage(), run_name="r1", gateway_admin_socket="", poll_s=0.01)
