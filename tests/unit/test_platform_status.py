"""The platform-status page, the pipeline summary read from events, and the Prometheus exposition."""

from datetime import datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families

from tasks.platform_status import ComponentRow, MonitorSnapshot, render_markdown, sparkline
from tasks.platform_summary import summarise_events
from tasks.prometheus_exposition import exposition
from tasks.prompt_health import PromptHealth, PromptShift, VersionFigures
from tasks.thresholds import Breach

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def _event(name: str, minutes_ago: float, payload: dict, resource_name: str = "x") -> dict:
    return {"event": name, "occurred": (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z"),
            "resource": {"prefect.resource.id": f"r.{resource_name}", "prefect.resource.name": resource_name},
            "payload": payload}


EVENTS = [  # newest first, as the events API returns them
    _event("llm-resilience.drill.passed", 5, {  # the shape flows/failover_drill.py emits
        "reasons": [], "measurements": {"detect_ms": 600.0, "failover_ms": 1100.0, "recover_ms": None, "requests": 40,
                                        "failed": 0, "detect_source": "gateway",
                                        "phases": {"fault": {"requests": 10, "failed": 0, "p50_ms": 300.0, "p99_ms": 900.0}}},
        "slo": [{"name": "failed_requests", "passed": True}]}, "model-server-crash"),
    _event("llm-resilience.replication.lag", 10, {"current_lag_s": 4.5, "pending_objects": 3, "pending_bytes": 2048,
                                                  "kind": "status"}, "region-a -> region-b"),
    _event("llm-resilience.replication.lag", 20, {"current_lag_s": 99.0}, "region-a -> region-b"),
    _event("llm-resilience.backup.failed", 30, {"operation": "prune", "error": "not a backup"}),
    _event("llm-resilience.backup.completed", 90, {"operation": "backup", "files": 12}),
    _event("llm-resilience.drill.failed", 120, {"time_to_detect_s": 9}),
]


def _snapshot() -> MonitorSnapshot:
    trend = [None] * 20 + [100.0, 120.0, 400.0, 110.0]
    prompt = PromptHealth(
        prompt="capitals", production_version=3,
        figures=VersionFigures(version=3, error_samples=4, error_rate=0.25, latency_samples=4, p95_latency_ms=800,
                               pass_rate=0.9),
        shifts=[PromptShift(prompt="capitals", from_version=2, to_version=3, metric="error_rate", before=0, after=0.25,
                            moved_at=NOW)],
        detail="shifted",
    )
    return MonitorSnapshot(
        at=NOW, run_id="r",
        components=[
            ComponentRow(component="llm-region-a", kind="llm", status="down", error_rate=1.0, cpu_percent=12.5,
                         memory_rss_bytes=300 * 2**20, cpu_seconds_total=42.0, trend=trend),
            ComponentRow(component="sessions-region-b", kind="sessions", status="ok", latency_ms=1.5,
                         replication_lag_bytes=0, trend=[None] * 24),
        ],
        gpu_detail="absent: no nvidia-smi on PATH",
        breaches=[Breach(metric="status", component="llm-region-a", value=2, threshold="status > 1.5", limit=1.5,
                         kind="static")],
        breach_counts={"llm-region-a|status": 3}, runs_total=7, summary=summarise_events(EVENTS), prompts=[prompt],
    )


def test_summary_takes_the_newest_event_of_each_kind() -> None:
    s = summarise_events(EVENTS)
    assert s.backup.last_success_at == NOW - timedelta(minutes=90) and s.backup.last_failure_at is None
    assert [(r.link, r.lag_s, r.pending_bytes) for r in s.replication] == [("region-a -> region-b", 4.5, 2048)]
    assert s.drill.passed and s.drill.name == "model-server-crash"
    assert s.drill.figures == {"detect_ms": 600.0, "failover_ms": 1100.0, "requests": 40, "failed": 0,
                               "fault_requests": 10, "fault_failed": 0, "fault_p50_ms": 300.0, "fault_p99_ms": 900.0}


def test_sparkline_scales_and_marks_gaps() -> None:
    assert sparkline([None, 1.0, 5.0, 9.0]) == "·▁▅█"
    assert sparkline([None, None]) == "··"
    assert sparkline([3.0, 3.0]) == "▁▁"


def test_status_page_has_a_row_per_component_and_the_summary() -> None:
    md = render_markdown(_snapshot())
    assert "| llm-region-a | 🔴 down |" in md and "| sessions-region-b | 🟢 ok | 2 ms |" in md
    assert "`····················▁▁█▁`" in md  # the 24 h trend chart
    assert "**Backup**: last success 90 min ago" in md
    assert "**Replication** region-a -> region-b: lag 4.5 s, 3 objects / 2,048 bytes pending" in md
    assert "**Last drill** model-server-crash: passed" in md and "failover_ms 1100" in md
    assert "**capitals** production v3: pass rate 90%, error rate 25%, p95 800 ms" in md
    assert "GPU: absent: no nvidia-smi on PATH" in md
    assert "llm-region-a status = 2 breaches status > 1.5" in md


def test_exposition_parses_and_follows_prometheus_conventions() -> None:
    text = exposition(_snapshot(), now=NOW).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("llmr_component_up", (("component", "llm-region-a"), ("kind", "llm")))] == 0
    assert samples[("llmr_process_resident_memory_bytes", (("component", "llm-region-a"),))] == 300 * 2**20
    assert samples[("llmr_process_cpu_seconds_total", (("component", "llm-region-a"),))] == 42.0
    assert samples[("llmr_replication_pending_bytes", (("link", "region-a -> region-b"),))] == 2048
    assert samples[("llmr_backup_last_success_age_seconds", ())] == 90 * 60
    assert samples[("llmr_drill_last_duration_seconds", (("figure", "failover"),))] == 1.1
    assert samples[("llmr_drill_last_duration_seconds", (("figure", "fault_p99"),))] == 0.9
    assert samples[("llmr_drill_last_figure", (("figure", "failed"),))] == 0
    assert samples[("llmr_prompt_pass_ratio", (("prompt", "capitals"), ("version", "3")))] == 0.9
    assert samples[("llmr_threshold_breaches_total", (("component", "llm-region-a"), ("metric", "status")))] == 3
    assert samples[("llmr_gpu_present", ())] == 0
    assert families["llmr_threshold_breaches"].type == "counter" and families["llmr_monitor_runs"].type == "counter"


def test_exposition_declares_every_family_before_the_first_run() -> None:
    names = {f.name for f in text_string_to_metric_families(exposition(None).decode())}
    assert {"llmr_component_up", "llmr_replication_lag_seconds", "llmr_backup_last_success_age_seconds",
            "llmr_drill_last_passed", "llmr_prompt_pass_ratio"} <= names
