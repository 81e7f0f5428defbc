"""From a drill's raw records to its figures and verdicts: pure functions, no I/O.

Times: detect = fault injected -> the gateway stops routing to the primary (read from the
gateway's runtime API when it has one, else the first answer from the secondary); failover =
fault injected -> the first successful answer served by the secondary after the primary's last
answer (the secondary is a warm standby that also answers ~1 in 256 requests when all is well;
such a request finishing just after the fault, before the primary is marked down, would read as
an early failover: a small, documented error); recover = rollback done
-> the first successful answer served by the primary again. Latency percentiles are over
successful requests, by the phase in which each was sent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from tasks.drill_experiment import AbortCondition, Probe, Slo
from tasks.drill_load import TurnRecord


@dataclass(frozen=True)
class GatewayObservation:
    at: float
    server: str
    serving: bool


class Marks(BaseModel):
    """When the drill did what (unix times)."""

    load_started: float
    fault_injected: float
    rollback_done: float
    ended: float


class PhaseLatency(BaseModel):
    requests: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None


class Measurements(BaseModel):
    detect_ms: float | None
    detect_source: str
    failover_ms: float | None
    recover_ms: float | None
    requests: int
    failed: int
    failed_per_1000: float
    skipped_ticks: int
    lost_turns: int | None
    acknowledged_turns: int
    phases: dict[str, PhaseLatency]


class Verdict(BaseModel):
    name: str
    limit: float | None
    measured: float | None
    passed: bool
    detail: str = ""


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q% of values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def phase_of(record: TurnRecord, marks: Marks) -> str:
    if record.sent_at < marks.fault_injected:
        return "before"
    return "during" if record.sent_at < marks.rollback_done else "after"


def phase_latency(records: Sequence[TurnRecord]) -> PhaseLatency:
    ok = [r.latency_ms for r in records if r.ok]
    return PhaseLatency(requests=len(records), failed=sum(not r.ok for r in records),
                        p50_ms=_round(percentile(ok, 50)), p99_ms=_round(percentile(ok, 99)))


def measure(records: Sequence[TurnRecord], marks: Marks, observations: Sequence[GatewayObservation], *,
            primary: str, secondary: str, skipped: int = 0, lost_turns: int | None = None,
            acknowledged: int = 0) -> Measurements:
    t0, t_rb = marks.fault_injected, marks.rollback_done
    primary_until = max((r.done_at for r in records if r.ok and r.backend == primary and t0 <= r.done_at < t_rb),
                        default=t0)
    first_secondary = min((r.done_at for r in records
                           if r.ok and r.backend == secondary and r.done_at >= primary_until), default=None)
    failover_ms = _ms(first_secondary, t0)
    gateway_down = min((o.at for o in observations if o.server == primary and not o.serving and o.at >= t0),
                       default=None)
    if observations:
        detect_ms, source = _ms(gateway_down, t0), "gateway runtime API"
    else:
        detect_ms, source = failover_ms, "first answer from the secondary (gateway has no runtime API)"
    first_primary_again = min((r.done_at for r in records if r.ok and r.backend == primary and r.sent_at >= t_rb),
                              default=None)
    failed = sum(not r.ok for r in records)
    by_phase: dict[str, list[TurnRecord]] = {"before": [], "during": [], "after": []}
    for record in records:
        by_phase[phase_of(record, marks)].append(record)
    return Measurements(
        detect_ms=detect_ms, detect_source=source, failover_ms=failover_ms,
        recover_ms=_ms(first_primary_again, t_rb), requests=len(records), failed=failed,
        failed_per_1000=round(1000 * failed / len(records), 2) if records else 0.0,
        skipped_ticks=skipped, lost_turns=lost_turns, acknowledged_turns=acknowledged,
        phases={name: phase_latency(rs) for name, rs in by_phase.items()},
    )


def evaluate_slos(m: Measurements, slo: Slo) -> list[Verdict]:
    checks = [("max_detect_ms", slo.max_detect_ms, m.detect_ms),
              ("max_failover_ms", slo.max_failover_ms, m.failover_ms),
              ("max_failed_per_1000", slo.max_failed_per_1000, m.failed_per_1000),
              ("max_p99_ms_during", slo.max_p99_ms_during, m.phases["during"].p99_ms),
              ("max_lost_turns", None if slo.max_lost_turns is None else float(slo.max_lost_turns),
               None if m.lost_turns is None else float(m.lost_turns))]
    verdicts = []
    for name, limit, measured in checks:
        if limit is None:
            continue
        if measured is None:
            verdicts.append(Verdict(name=name, limit=limit, measured=None, passed=False, detail="never observed"))
        else:
            verdicts.append(Verdict(name=name, limit=limit, measured=measured, passed=measured <= limit))
    return verdicts


def window(records: Sequence[TurnRecord], start: float, end: float) -> list[TurnRecord]:
    """Requests that *finished* in [start, end): a slow answer counts when it arrives, not never."""
    return [r for r in records if start <= r.done_at < end]


def check_steady_state(records: Sequence[TurnRecord], probes: Sequence[Probe], *,
                       missing_turns: int | None = None) -> list[Verdict]:
    """The hypothesis over one window of traffic; ``missing_turns`` feeds session_continuity."""
    verdicts = []
    ok = [r for r in records if r.ok]
    for probe in probes:
        if probe.kind == "success_rate":
            rate = len(ok) / len(records) if records else None
            verdicts.append(_at_least(probe, rate))
        elif probe.kind == "p99_latency_ms":
            p99 = percentile([r.latency_ms for r in ok], 99)
            verdicts.append(Verdict(name="p99_latency_ms", limit=probe.tolerance, measured=_round(p99),
                                    passed=p99 is not None and p99 <= probe.tolerance))
        elif probe.kind == "gateway_completion":
            verdicts.append(_at_least(probe, float(len(ok))))
        else:  # session_continuity
            verdicts.append(Verdict(
                name="session_continuity", limit=probe.tolerance,
                measured=None if missing_turns is None else float(missing_turns),
                passed=missing_turns is not None and missing_turns <= probe.tolerance,
                detail="acknowledged turns missing from the primary session store"))
    return verdicts


def _at_least(probe: Probe, measured: float | None) -> Verdict:
    return Verdict(name=probe.kind, limit=probe.tolerance, measured=_round(measured),
                   passed=measured is not None and measured >= probe.tolerance)


def abort_breaches(records: Sequence[TurnRecord], conditions: Sequence[AbortCondition], now: float) -> list[str]:
    """Stop conditions breached over their trailing window (requests that have finished)."""
    breaches = []
    for cond in conditions:
        recent = [r for r in records if now - cond.window_s <= r.done_at <= now]
        if not recent:
            continue
        if cond.signal == "error_rate":
            value = sum(not r.ok for r in recent) / len(recent)
        else:
            value = percentile([r.latency_ms for r in recent if r.ok], 99) or 0.0
        if value > cond.threshold:
            breaches.append(f"{cond.signal} {value:.3g} > {cond.threshold:g} over the last {cond.window_s:g} s")
    return breaches


def _ms(at: float | None, since: float) -> float | None:
    return None if at is None else round((at - since) * 1000, 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
