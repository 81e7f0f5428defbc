"""Which scheduled runs count as missed while the platform was down, and where the check runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import httpx
import pytest

from deployments.settings import PlatformSettings
from deployments.stack import missed_runs
from deployments.stack.components import build_components
from deployments.stack.missed_runs import MissedRunsUnchecked, cancel_missed_runs_patiently, missed

NOW = dt.datetime(2026, 11, 24, 16, 0, tzinfo=dt.UTC)


def run(name: str, minutes_ago: float, state: str = "SCHEDULED") -> dict:
    due = (NOW - dt.timedelta(minutes=minutes_ago)).isoformat()
    return {"id": name, "state": {"type": state}, "expected_start_time": due, "next_scheduled_start_time": due}


def test_only_scheduled_runs_later_than_the_grace_are_missed() -> None:
    runs = [run("hours-late", 300), run("just-over", 10.5), run("just-under", 9.5), run("due-later", -30),
            run("running", 300, state="RUNNING"), run("pending", 300, state="PENDING")]
    assert [r["id"] for r in missed(runs, NOW, grace_s=600)] == ["hours-late", "just-over"]
    assert [r["id"] for r in missed(runs, NOW, grace_s=0)] == ["hours-late", "just-over", "just-under"]


def test_a_rescheduled_run_is_judged_by_its_next_start() -> None:
    retried = run("retrying", 300) | {"next_scheduled_start_time": (NOW + dt.timedelta(minutes=1)).isoformat()}
    assert missed([retried], NOW, grace_s=600) == []


def test_the_first_worker_cancels_missed_runs_before_it_starts(tmp_path) -> None:  # noqa: ANN001
    settings = PlatformSettings(state_dir=tmp_path, workers=3)
    workers = {c.name: c for c in build_components(settings) if c.name.startswith("prefect-worker")}
    assert workers["prefect-worker"].prepare is not None  # the first worker: before any worker takes a run
    assert workers["prefect-worker-2"].prepare is None and workers["prefect-worker-3"].prepare is None


def _status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:4200/api/flow_runs/filter")
    return httpx.HTTPStatusError(f"{code}", request=request, response=httpx.Response(code, request=request))


class FakeServer:
    """Answers the check with each of ``answers`` in turn: an exception to raise or a count."""

    def __init__(self, answers: list[Exception | int]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, *_args: object, **_kwargs: object) -> int:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _patient(monkeypatch: pytest.MonkeyPatch, server: FakeServer, clock: FakeClock,
             progress: Callable[[str], None] = lambda _m: None) -> int:
    monkeypatch.setattr(missed_runs, "cancel_missed_runs", server)
    return cancel_missed_runs_patiently("http://127.0.0.1:4200/api", 600, "pool-a", deadline_s=300,
                                        progress=progress, sleep=clock.sleep, clock=lambda: clock.now)


def test_a_busy_server_is_asked_again_until_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer([httpx.ReadTimeout("timed out"), _status_error(500), httpx.ConnectError("refused"), 7])
    clock, said = FakeClock(), []
    assert _patient(monkeypatch, server, clock, said.append) == 7
    assert server.calls == 4 and clock.slept == [2, 4, 8]
    assert len(said) == 3 and all("the Prefect server is busy" in m for m in said)
    assert "ReadTimeout: timed out" in said[0]


def test_a_server_busy_past_the_deadline_keeps_the_worker_from_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    server, clock = FakeServer([httpx.ReadTimeout("timed out")]), FakeClock()
    with pytest.raises(MissedRunsUnchecked) as caught:
        _patient(monkeypatch, server, clock)
    message = str(caught.value)
    assert "work pool pool-a" in message and "still busy after 300 s" in message
    assert "ReadTimeout: timed out" in message and "The worker was not started" in message
    assert sum(clock.slept) <= 300 and clock.slept[-1] == 30  # backoff capped, deadline kept
    assert server.calls == len(clock.slept) + 1


def test_a_refused_query_is_not_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    server, clock = FakeServer([_status_error(422)]), FakeClock()
    with pytest.raises(MissedRunsUnchecked, match="it refused the query"):
        _patient(monkeypatch, server, clock)
    assert server.calls == 1 and clock.slept == []


def test_the_first_worker_does_not_start_when_the_check_cannot_be_made(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(missed_runs, "cancel_missed_runs", FakeServer([_status_error(404)]))
    worker = next(c for c in build_components(PlatformSettings(state_dir=tmp_path)) if c.name == "prefect-worker")
    assert worker.prepare is not None
    with pytest.raises(MissedRunsUnchecked):  # raised from prepare: the launcher stops what it started
        worker.prepare(lambda _m: None)
