"""One failover drill, start to finish, as plain Python (the flow in flows/failover_drill.py is
a thin shell around it, so tests and the benchmark run exactly what users run).

Order, after Chaos Toolkit: claim the targets -> refuse if a fault is still in place -> start the
load -> check the steady-state hypothesis -> inject -> watch the abort conditions for the fault's
duration -> roll back (always, on every exit path; the fault's lease covers a killed process)
-> fail the session store back if it was failed over -> wait for the steady state to return
within the deadline -> measure, judge against the SLOs, keep the journal.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from deployments.settings import PlatformSettings
from deployments.stack.haproxy_config import BACKEND
from deployments.stack.haproxy_runtime import HAProxyRuntime
from tasks.drill_experiment import Experiment, plan_experiment
from tasks.drill_journal import DrillJournal
from tasks.drill_load import LoadGenerator, SessionAction, SessionRouter
from tasks.drill_lock import claim_targets
from tasks.drill_measurements import (
    Marks, Verdict, abort_breaches, check_steady_state, evaluate_slos, measure, window,
)
from tasks.errors import LLMResilienceError, NonRetryableError
from tasks.gateway_observer import GatewayObserver
from tasks.session_topology import RedisNode, follow, switchover

logger = logging.getLogger(__name__)
_URL_PASSWORD = re.compile(r"(?<=://)[^/\s@:]+:[^/\s@]+@")  # scheme://user:password@host


class FaultStillActiveError(NonRetryableError):
    """A target still carries a fault (an interrupted drill's, until its lease ends)."""


class DrillInterrupted(LLMResilienceError):
    """The drill's process was asked to stop (SIGTERM: a cancellation from the Prefect UI)."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception while a fault may be in place, so ``finally`` rolls it back.

    A cancelled flow run's process gets SIGTERM; Python's default would end it without running
    any ``finally``, leaving the fault to its lease. Only the main thread can set handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted(signum: int, frame: object) -> None:
        raise DrillInterrupted("SIGTERM received (cancelled?): rolling the fault back")

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def error_text(exc: BaseException, secrets: Iterable[str] = (), limit: int = 1000) -> str:
    """``Type: message`` (with its notes) for journals and events, which outlive the run and are
    readable by anyone with UI access: known secret values and URL passwords are masked."""
    text = "; ".join([f"{type(exc).__name__}: {exc}", *getattr(exc, "__notes__", [])])
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _URL_PASSWORD.sub("***@", text)[:limit]


def settings_secrets(settings: object) -> list[str]:
    """The secret values a platform's settings hold (S3 secret key, database URL)."""
    return [v.get_secret_value() for v in vars(settings).values() if isinstance(v, SecretStr)]


def attach_journal(exc: BaseException, journal: DrillJournal) -> None:
    """Hand a drill's partial journal to whoever catches ``exc`` (the flow keeps it as evidence)."""
    exc.drill_journal = journal  # type: ignore[attr-defined]


def journal_of(exc: BaseException) -> DrillJournal | None:
    """The partial journal of a drill that ended in ``exc``, if ``DrillRunner.run`` attached one."""
    journal = getattr(exc, "drill_journal", None)
    return journal if isinstance(journal, DrillJournal) else None


@dataclass
class DrillOutcome:
    journal: DrillJournal
    passed: bool
    reasons: list[str] = field(default_factory=list)


@dataclass
class DrillRunner:
    settings: PlatformSettings
    experiment: Experiment
    run_name: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    gateway_url: str | None = None
    # None: the platform's HAProxy admin socket; "" : the gateway has no runtime API.
    gateway_admin_socket: str | None = None
    poll_s: float = 0.25

    def run(self) -> DrillOutcome:
        exp, settings = self.experiment, self.settings
        plan, fault = plan_experiment(settings, exp)
        journal = DrillJournal(experiment=exp.model_dump(mode="json"), run=self.run_name, started_at=time.time())
        journal.log("action", "plan", "; ".join(f"{a.step} {a.component}: {a.detail}" for a in plan.actions))
        try:
            with claim_targets(settings.run_dir / "drills", plan.touches, experiment=exp.name, run=self.run_name), \
                    sigterm_raises():
                if fault.is_active():
                    raise FaultStillActiveError(
                        f"{fault.describe()} is still in place (an interrupted drill's fault lasts until its "
                        "lease ends); refused before injecting anything")
                return self._run_claimed(fault, journal)
        except Exception as exc:
            self._journal_error(journal, exc)
            raise

    def _journal_error(self, journal: DrillJournal, exc: Exception) -> None:
        """A drill that raised (cancelled, rollback or failback failed) is failed, and its journal so far
        goes with the exception: the flow keeps it as evidence and reports the failure."""
        text = error_text(exc, settings_secrets(self.settings))
        journal.log("error", "drill-ended", text)
        journal.entries.sort(key=lambda e: e.at)
        journal.status = "failed"
        journal.reasons.append(f"drill ended by an error: {text}")
        attach_journal(exc, journal)

    def _run_claimed(self, fault, journal: DrillJournal) -> DrillOutcome:  # noqa: ANN001, C901
        exp, settings = self.experiment, self.settings
        primary, secondary = settings.region_a, settings.region_b
        nodes = (RedisNode(f"redis-{primary.name}", settings.host, primary.redis_port),
                 RedisNode(f"redis-{secondary.name}", settings.host, secondary.redis_port))
        load = LoadGenerator(
            gateway_url=self.gateway_url or settings.gateway_url, model=settings.llm_model_alias,
            profile=exp.load, key_prefix=f"llmr:drill:{self.run_name}",
            router_factory=lambda: SessionRouter(nodes[0], nodes[1], mode=exp.load.session_mode,
                                                 failover=exp.session_failover, on_action=load.record_action),
        )
        socket = settings.haproxy_socket if self.gateway_admin_socket is None else self.gateway_admin_socket
        observer = (GatewayObserver(HAProxyRuntime(socket, BACKEND)).start()
                    if socket and Path(socket).exists() else None)
        reasons: list[str] = []
        load.start()
        load_started = time.time()
        t0 = t_rb = time.time()
        injected = False
        try:  # whatever happens, the load and the observer stop (else they outlive the drill)
            with self._sessions_failed_back(nodes, load, journal):  # on every exit, after the rollback
                try:  # whatever happens, an injected fault is rolled back
                    before = self._steady_state_before(load_started, load)
                    journal.steady_state_before = before
                    journal.log("probe", "steady-state-before", _verdicts_text(before))
                    if not all(v.passed for v in before):
                        reasons.append(f"steady state not met before the fault ({_failed_names(before)}); "
                                       "nothing injected")
                        t0 = t_rb = time.time()
                    else:
                        t0 = time.time()
                        injected = True
                        assert exp.rollback is not None
                        fault.inject(exp.rollback.lease_s)
                        journal.log("action", "inject", fault.describe(), at=t0)
                        reasons += self._observe_fault(t0, load, journal)
                finally:
                    if injected:
                        fault.rollback()
                        t_rb = time.time()
                        journal.log("action", "rollback", f"undid {fault.describe()}", at=t_rb)
            if injected:
                after, recovered = self._await_recovery(t_rb, load, journal)
                journal.steady_state_after = after
                if not recovered:
                    reasons.append(f"steady state did not return within recovery_deadline_s "
                                   f"{exp.recovery_deadline_s:g} ({_failed_names(after)})")
        finally:
            load.stop()
            observations = observer.stop() if observer else []
            if observer is not None and observer.errors:
                journal.log("error", "gateway-observer", f"{observer.errors} failed reads of the runtime API; "
                                                         f"last: {observer.last_error}")
        if load.error is not None:
            reasons.append(f"load generator failed: {load.error!r}")
        lost, lost_detail = load.missing_turns()
        marks = Marks(load_started=load_started, fault_injected=t0, rollback_done=t_rb, ended=time.time())
        m = measure(load.snapshot(), marks, observations, primary=primary.name, secondary=secondary.name,
                    skipped=load.skipped, lost_turns=None if lost < 0 else lost,
                    acknowledged=sum(len(t) for t in load.acknowledged.values()))
        load.cleanup()
        journal.marks, journal.measurements = marks, m
        journal.lost_turn_detail = lost_detail
        journal.gateway_observations = [o.__dict__ for o in observations]
        journal.requests = load.records_as_dicts()
        for action in load.actions:
            journal.log("action", action.action, action.detail, at=action.at)
        journal.entries.sort(key=lambda e: e.at)
        if injected:
            journal.slo_verdicts = evaluate_slos(m, exp.slo)
            reasons += [f"SLO {v.name} breached: measured {v.measured if v.measured is not None else 'nothing'}"
                        f" (limit {v.limit:g}){' - ' + v.detail if v.detail else ''}"
                        for v in journal.slo_verdicts if not v.passed]
        journal.status = "failed" if reasons else "passed"
        journal.reasons = reasons
        return DrillOutcome(journal=journal, passed=not reasons, reasons=reasons)

    def _steady_state_before(self, load_started: float, load: LoadGenerator) -> list[Verdict]:
        """The hypothesis over the warm-up's last window; on a slow machine the window may hold
        too few finished requests to judge, so wait for them (up to three warm-ups)."""
        exp = self.experiment
        enough = max(3, int(exp.load.rate_rps * exp.steady_state.window_s / 2))
        self._sleep_until(load_started + exp.warmup_s, load)
        while True:
            now = time.time()
            recent = window(load.snapshot(), now - exp.steady_state.window_s, now)
            if len(recent) >= enough or now >= load_started + 3 * exp.warmup_s or load.error is not None:
                return check_steady_state(recent, exp.steady_state.probes, missing_turns=self._missing(load))
            time.sleep(self.poll_s)

    def _observe_fault(self, t0: float, load: LoadGenerator, journal: DrillJournal) -> list[str]:
        """Hold the fault for its duration, stopping early if an abort condition is breached."""
        exp = self.experiment
        while time.time() < t0 + exp.duration_s:
            breaches = abort_breaches(load.snapshot(), exp.abort_conditions, time.time())
            if breaches:
                journal.log("abort", "abort-condition", "; ".join(breaches))
                return [f"aborted: {b}" for b in breaches]
            if load.error is not None:
                return [f"load generator failed: {load.error!r}"]
            time.sleep(self.poll_s)
        return []

    @contextmanager
    def _sessions_failed_back(self, nodes: tuple[RedisNode, RedisNode], load: LoadGenerator,
                              journal: DrillJournal) -> Iterator[None]:
        """However the block ends, a failed-over session store fails back: else the rolled-back
        region-a Redis serves as a second primary beside the promoted region-b (split brain).

        When the block raised, that exception stays the one raised; a failback error is journaled,
        logged and noted on it rather than replacing it.
        """
        try:
            yield
        except BaseException as exc:
            try:
                self._fail_back_if_failed_over(nodes, load, journal)
            except Exception as failback_error:
                text = error_text(failback_error, settings_secrets(self.settings))
                journal.log("error", "session-failback", f"failed while the drill was ending on an error: {text}")
                logger.error("session failback failed after %s: %s", type(exc).__name__, text)
                exc.add_note(f"session failback also failed: {text}")
            raise
        self._fail_back_if_failed_over(nodes, load, journal)

    def _fail_back_if_failed_over(self, nodes: tuple[RedisNode, RedisNode], load: LoadGenerator,
                                  journal: DrillJournal) -> None:
        if load.router is not None and load.router.failed_over:
            self._fail_sessions_back(nodes, load, journal)

    def _fail_sessions_back(self, nodes: tuple[RedisNode, RedisNode], load: LoadGenerator,
                            journal: DrillJournal) -> None:
        """The original primary re-syncs from the promoted one, then takes the role back."""
        original, promoted = nodes
        start = time.time()
        follow(original, promoted)
        journal.log("action", "session-resync", f"{original.name} follows {promoted.name}", at=start)
        paused = switchover(promoted, original, timeout_s=self.experiment.recovery_deadline_s)
        assert load.router is not None
        load.router.primary, load.router.secondary = original, promoted
        journal.log("action", "session-failback", f"{original.name} primary again; writes paused {paused * 1000:.0f} ms")

    def _await_recovery(self, t_rb: float, load: LoadGenerator, journal: DrillJournal) -> tuple[list[Verdict], bool]:
        exp = self.experiment
        deadline = t_rb + exp.recovery_deadline_s
        primary = self.settings.region_a.name
        verdicts: list[Verdict] = []
        while True:
            now = time.time()
            records = load.snapshot()
            back = min((r.done_at for r in records if r.ok and r.backend == primary and r.sent_at >= t_rb), default=None)
            if back is not None and now - exp.steady_state.window_s >= back:
                verdicts = check_steady_state(window(records, now - exp.steady_state.window_s, now),
                                              exp.steady_state.probes, missing_turns=self._missing(load))
                if all(v.passed for v in verdicts):
                    journal.log("probe", "steady-state-after", _verdicts_text(verdicts))
                    return verdicts, True
            if now >= deadline + exp.steady_state.window_s:
                journal.log("probe", "steady-state-after", _verdicts_text(verdicts) or "primary never served again")
                return verdicts, False
            time.sleep(self.poll_s)

    @staticmethod
    def _missing(load: LoadGenerator) -> int | None:
        """Acknowledged turns the current primary lacks, counted now (a side connection)."""
        router = load.router
        if router is None:
            return None
        with load._lock:
            acked = {u: set(t) for u, t in load.acknowledged.items()}
        probe = SessionRouter(router.primary, router.secondary, mode="async", failover=False,
                              on_action=lambda _a: None)

        async def count() -> int | None:
            missing = 0
            try:
                for user, turns in acked.items():
                    stored = await probe.stored_turns(load.key(user))
                    if stored is None:
                        return None
                    missing += len(turns - stored)
                return missing
            finally:
                await probe.close()

        return asyncio.run(count())

    @staticmethod
    def _sleep_until(at: float, load: LoadGenerator) -> None:
        while time.time() < at and load.error is None:
            time.sleep(0.1)


def _verdicts_text(verdicts: list[Verdict]) -> str:
    return "; ".join(f"{v.name}={v.measured} (limit {v.limit:g}) {'ok' if v.passed else 'FAILED'}" for v in verdicts)


def _failed_names(verdicts: list[Verdict]) -> str:
    return ", ".join(v.name for v in verdicts if not v.passed) or "no traffic"


__all__ = ["DrillOutcome", "DrillRunner", "FaultStillActiveError", "SessionAction", "error_text", "journal_of",
           "settings_secrets"]
