"""Prompt-aware health: figures per production version, and the shift after a label move."""

from datetime import datetime, timedelta, timezone

from tasks.prompt_health import assess_prompt, probe_component
from tasks.prompt_registry import LabelMove, RunRecord
from tasks.thresholds import Sample

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
LIMITS = {"error_rate_shift": 0.2, "latency_shift_factor": 1.5, "min_samples": 3}


def _move(seq: int, frm: int | None, to: int) -> LabelMove:
    return LabelMove(seq=seq, label="production", from_version=frm, to_version=to, actor="t",
                     at=NOW - timedelta(hours=1), reason="test")


def _probes(version: int, errors: list[float], latency: float) -> list[Sample]:
    out = []
    for i, e in enumerate(errors):
        at = NOW - timedelta(minutes=i)
        out.append(Sample(at=at, component=probe_component("faq", version), metric="error_rate", value=e))
        if e == 0:
            out.append(Sample(at=at, component=probe_component("faq", version), metric="latency_ms", value=latency))
    return out


def test_shift_in_error_rate_and_latency_names_prompt_versions_and_change() -> None:
    records = [RunRecord(version=1, run_id="r1", passed=True, at=NOW - timedelta(hours=3),
                         summary={"pass_rate": 0.9, "error_rate": 0.0, "p95_latency_ms": 400.0}),
               RunRecord(version=2, run_id="r2", passed=True, at=NOW - timedelta(minutes=50),
                         summary={"pass_rate": 0.8, "error_rate": 0.5, "p95_latency_ms": 1300.0})]
    probes = _probes(1, [0, 0, 0], 400) + _probes(2, [1, 1, 0, 0], 1200)
    health = assess_prompt("faq", {"production": 2}, [_move(1, None, 1), _move(2, 1, 2)], records, probes, **LIMITS)
    assert health.production_version == 2 and health.figures.pass_rate == 0.8
    assert {s.metric for s in health.shifts} == {"error_rate", "p95_latency_ms"}
    error = next(s for s in health.shifts if s.metric == "error_rate")
    assert (error.from_version, error.to_version, error.before, error.after) == (1, 2, 0.0, 0.5)
    assert "prompt faq: after production moved v1 -> v2" in health.detail and "error_rate rose from 0 to 0.5" in health.detail


def test_no_shift_without_enough_samples_or_when_figures_hold() -> None:
    moves = [_move(1, None, 1), _move(2, 1, 2)]
    few = _probes(1, [0, 0, 0], 400) + _probes(2, [1], 400)
    assert assess_prompt("faq", {"production": 2}, moves, [], few, **LIMITS).shifts == []
    same = _probes(1, [0, 0, 0], 400) + _probes(2, [0, 0, 0], 420)
    health = assess_prompt("faq", {"production": 2}, moves, [], same, **LIMITS)
    assert health.shifts == [] and "no shift since production moved v1 -> v2" in health.detail


def test_prompt_without_production_or_moves() -> None:
    assert assess_prompt("faq", {}, [], [], [], **LIMITS).detail == "no production label"
    health = assess_prompt("faq", {"production": 1}, [_move(1, None, 1)], [], _probes(1, [0], 300), **LIMITS)
    assert health.detail == "production never moved" and health.figures.error_rate == 0.0
