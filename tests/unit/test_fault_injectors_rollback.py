"""A process fault's lease is its safety net: it is cancelled only once the fault is undone."""

from __future__ import annotations

import pytest

import tasks.fault_injectors as fault_injectors
from tasks.fault_injectors import ProcessFault


class _Launcher:
    def __init__(self, steps: list[str], *, fails: bool) -> None:
        self.steps, self.fails = steps, fails

    def up(self, components: list[str]) -> None:
        self.steps.append(f"restart {','.join(components)}")
        if self.fails:
            raise RuntimeError("llm-region-a not ready within 60 s")


def crash_fault(steps: list[str], *, undo_fails: bool) -> ProcessFault:
    """A crash fault as ``inject`` leaves it (one lease armed), without a platform."""
    fault = object.__new__(ProcessFault)
    fault.kind, fault.components = "crash", ["llm-region-a"]
    fault.launcher = _Launcher(steps, fails=undo_fails)  # type: ignore[assignment]
    fault._leases = ["lease-llm-region-a"]  # type: ignore[list-item]
    return fault


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    done: list[str] = []
    monkeypatch.setattr(fault_injectors, "stop_process", lambda lease, timeout_s: done.append(f"cancel {lease}"))
    return done


def test_leases_are_cancelled_after_the_fault_is_undone(steps: list[str]) -> None:
    fault = crash_fault(steps, undo_fails=False)
    fault.rollback()
    assert steps == ["restart llm-region-a", "cancel lease-llm-region-a"]
    assert fault._leases == []


def test_a_failed_undo_keeps_the_lease_armed(steps: list[str]) -> None:
    fault = crash_fault(steps, undo_fails=True)
    with pytest.raises(RuntimeError, match="not ready"):
        fault.rollback()
    assert steps == ["restart llm-region-a"], "the lease was cancelled although the fault is still in place"
    assert fault._leases == ["lease-llm-region-a"]
    fault.launcher.fails = False  # type: ignore[attr-defined]
    fault.rollback()  # a second rollback retries the undo, then cancels the lease
    assert steps[-2:] == ["restart llm-region-a", "cancel lease-llm-region-a"] and fault._leases == []
