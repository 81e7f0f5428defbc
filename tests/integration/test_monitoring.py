"""The health monitor against the real platform: metrics and history, /metrics, the status page,
threshold breaches, prompt shifts, failure notifications, and bad input."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prometheus_client.parser import text_string_to_metric_families

from blocks import MonitoringPolicy, StorageTarget
from blocks.monitoring_policy import PromptWatch
from deployments.settings import PlatformSettings
from deployments.stack.provision import ALERTS_WEBHOOK
from flows.health import STATUS_ARTIFACT_KEY, HealthTargets, health_check
from tasks.errors import ConfigurationError
from tasks.health_probes import HealthStatus, ProbePolicy
from tasks.metrics_store import MetricsStore
from tasks.prompt_registry import PromptRegistry
from tasks.thresholds import Sample, Threshold
from tests.ports import free_ports
from tests.server_events import wait_for_events
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

# What the probes find, never how fast the machine is (see test_health_flow.py).
PROBES = ProbePolicy(degraded_latency_ms=3_600_000, timeout_s=120)
SUITE = "examples/prompts/capitals.yaml"


def _policy(platform: PlatformSettings, **fields: object) -> str:
    """A policy document of this test's own (the platform's `platform` document stays as provisioned)."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    MonitoringPolicy(state_dir=str(platform.state_dir), **fields).save(name)
    return name


def _prompt(name: str, *params: dict) -> PromptRegistry:
    """A prompt in the platform's registry with one version per ``params``; production on the first."""
    registry = PromptRegistry.from_target(StorageTarget.load("region-a"), "prompts")
    for p in params:
        registry.create_version(name, "{{question}}", params=p, author="test", message="monitoring test")
    registry.move_label(name, "production", 1, actor="test", reason="monitoring test")
    return registry


def _only(platform: PlatformSettings, policy: str, **probes: object) -> HealthTargets:
    """Targets with no component probes unless given: the monitor's own parts run, fast."""
    fields = {"storage": [], "llm_endpoints": [], "gateways": [], "session_stores": [], "check_prefect_api": False}
    return HealthTargets(**{**fields, **probes}, policy=PROBES, monitoring_policy=policy)


def _artifact(key: str):  # noqa: ANN202
    with get_client(sync_client=True) as client:
        return next(a for a in client.read_latest_artifacts(limit=100) if a.key == key)


def test_monitor_records_history_and_serves_every_family_on_metrics(platform: PlatformSettings) -> None:
    started = time.time()
    prompt = f"monitor-{uuid.uuid4().hex[:6]}"
    registry = _prompt(prompt, {"temperature": 0, "max_tokens": 8})
    # The regression flow records its outcome like this (tasks/prompt_regression.record_runs).
    registry.record_run(prompt, 1, "test-run", True, {"pass_rate": 0.75, "error_rate": 0.0, "p95_latency_ms": 900.0})
    # Pipelines announce their outcome as events; the monitor reads them back. Each comes from its
    # flow's own emitter, so a change of payload shape breaks this test too (the drill's journal is
    # built here: a real drill takes minutes, and test_failover_drills.py runs those).
    from flows.backup import _emit
    from flows.failover_drill import emit_drill_event
    from flows.replication import replication_status
    from tasks.drill_journal import DrillJournal
    from tasks.drill_measurements import Measurements

    _emit(True, "backup", "region-b/backups", {"files": 3, "bytes": 1234})
    journal = DrillJournal(experiment={"name": "monitor-test"}, run="monitor-test-run", started_at=started, status="passed")
    journal.measurements = Measurements(detect_ms=800.0, detect_source="gateway runtime API", failover_ms=1200.0,
                                        recover_ms=5000.0, requests=20, failed=0, failed_per_1000=0.0, skipped_ticks=0,
                                        lost_turns=0, acknowledged_turns=20, phases={})
    emit_drill_event("monitor-test", journal, links={})
    replication_status()
    for name, resource in [("llm-resilience.backup.completed", "llm-resilience.backup.backup"),
                           ("llm-resilience.drill.passed", "llm-resilience.drill.monitor-test"),
                           ("llm-resilience.replication.lag", "llm-resilience.replication.region-a.region-b")]:
        assert wait_for_events(platform, event=name, resource_id=resource, since=started)

    policy = _policy(platform, prompts=[PromptWatch(name=prompt, suite_path=SUITE)])
    report = health_check(HealthTargets(policy=PROBES, monitoring_policy=policy))
    assert report.component("notifications").status is HealthStatus.ok  # the exporter's inbox answers

    store = MetricsStore(platform.state_dir / "monitoring" / "metrics.sqlite")
    recent = store.since(datetime.now(timezone.utc) - timedelta(minutes=10))
    seen = {(s.component, s.metric) for s in recent}
    for component in ("llm-region-a", "llm-region-b", "storage-region-a", "sessions-region-a"):
        assert {(component, "cpu_percent"), (component, "memory_rss_bytes"), (component, "error_rate")} <= seen
        assert (component, "latency_ms") in seen
    assert (f"prompt:{prompt}@v1", "latency_ms") in seen

    status = _artifact(STATUS_ARTIFACT_KEY).data
    assert "| llm-region-a | 🟢 ok |" in status and "latency, last 24 h" in status
    assert "**Backup**: last success" in status and "**Last drill** monitor-test: passed" in status
    assert f"**{prompt}** production v1: pass rate 75%" in status

    text = httpx.get(platform.metrics_url, timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert values[("llmr_component_up", (("component", "llm-region-a"), ("kind", "llm")))] == 1
    assert values[("llmr_process_resident_memory_bytes", (("component", "llm-region-a"),))] > 10 * 2**20
    assert values[("llmr_probe_latency_seconds", (("component", "gateway"),))] > 0
    assert ("llmr_session_replication_lag_bytes", (("component", "sessions-region-b"),)) in values
    assert ("llmr_replication_lag_seconds", (("link", "region-a -> region-b"),)) in values
    assert ("llmr_replication_pending_bytes", (("link", "region-a -> region-b"),)) in values
    assert values[("llmr_backup_last_success_age_seconds", ())] >= 0
    assert values[("llmr_drill_last_duration_seconds", (("figure", "failover"),))] == 1.2
    assert values[("llmr_drill_last_passed", ())] == 1
    assert values[("llmr_prompt_pass_ratio", (("prompt", prompt), ("version", "1")))] == 0.75
    assert values[("llmr_monitor_runs_total", ())] >= 1
    assert families["llmr_process_cpu_seconds"].type == "counter"


def test_static_and_baseline_breaches_emit_events(platform: PlatformSettings) -> None:
    started = time.time()
    now = datetime.now(timezone.utc)
    # Five earlier runs saw llm-region-b answer in 1 ms; any real completion is far slower than 3x that.
    store = MetricsStore(platform.state_dir / "monitoring" / "metrics.sqlite")
    store.record("seeded-baseline", [Sample(at=now - timedelta(minutes=30 + i), component="llm-region-b",
                                            metric="latency_ms", value=1.0) for i in range(5)], at=now)
    policy = _policy(platform, prompts=[], thresholds=[
        Threshold(metric="memory_rss_bytes", component="gateway", kind="static", above=1),
        Threshold(metric="latency_ms", component="llm-region-b", kind="baseline", factor=3, statistic="p95",
                  window_minutes=15, baseline_window_minutes=60),
        Threshold(metric="memory_rss_bytes", component="gatewya", kind="static", above=1),  # a typo: enforced nowhere
    ])
    health_check(_only(platform, policy, llm_endpoints=["region-b"]))
    assert "- thresholds[2] (memory_rss_bytes > 1): component 'gatewya' matches none of this run's components (" \
        in _artifact(STATUS_ARTIFACT_KEY).data
    static = wait_for_events(platform, event="llm-resilience.health.threshold_breached",
                             resource_id="llm-resilience.component.gateway", since=started)
    assert static and static[0]["payload"]["metric"] == "memory_rss_bytes"
    assert static[0]["payload"]["value"] > 1 and static[0]["payload"]["threshold"] == "memory_rss_bytes > 1"
    assert static[0]["payload"]["baseline"] is None
    relative = wait_for_events(platform, event="llm-resilience.health.threshold_breached",
                               resource_id="llm-resilience.component.llm-region-b", since=started)
    payload = relative[0]["payload"]
    assert payload["metric"] == "latency_ms" and payload["baseline"] == 1.0 and payload["limit"] == 3.0
    assert payload["value"] > 3.0 and payload["kind"] == "baseline"


def test_prompt_version_change_that_breaks_requests_is_flagged(platform: PlatformSettings) -> None:
    started = time.time()
    prompt = f"shift-{uuid.uuid4().hex[:6]}"
    # v2's params are invalid for the model server: every request with it fails.
    registry = _prompt(prompt, {"temperature": 0, "max_tokens": 8}, {"temperature": "hot", "max_tokens": 8})
    policy = _policy(platform, thresholds=[], prompt_min_samples=2, prompt_endpoint_block="region-b",
                     prompts=[PromptWatch(name=prompt, suite_path=SUITE)])
    for _ in range(2):
        health_check(_only(platform, policy))
    registry.move_label(prompt, "production", 2, actor="test", reason="ship v2")
    for _ in range(2):
        health_check(_only(platform, policy))
    events = wait_for_events(platform, event="llm-resilience.health.prompt_shift",
                             resource_id=f"llm-resilience.prompt.{prompt}", since=started)
    payload = events[0]["payload"]
    assert (payload["from_version"], payload["to_version"], payload["metric"]) == (1, 2, "error_rate")
    assert payload["before"] == 0.0 and payload["after"] == 1.0
    assert f"prompt {prompt}: after production moved v1 -> v2" in payload["detail"]
    assert f"**{prompt}** production v2:" in _artifact(STATUS_ARTIFACT_KEY).data


def test_failed_pipeline_run_notifies_the_webhook_with_name_and_reason(deployed: PlatformSettings) -> None:
    from flows.prompt_regression import PromptChange, manage_prompt

    block = CustomWebhookNotificationBlock.load(ALERTS_WEBHOOK)
    original = block.url
    with WebhookReceiver() as receiver:
        block.url = receiver.url
        block.save(ALERTS_WEBHOOK, overwrite=True)
        try:
            state = manage_prompt(PromptChange(prompt="no-template", action="create-version"), return_state=True)
            assert state.is_failed()
            with get_client(sync_client=True) as client:
                run_name = client.read_flow_run(state.state_details.flow_run_id).name
            message = receiver.wait_for(run_name)
        finally:
            block.url = original
            block.save(ALERTS_WEBHOOK, overwrite=True)
    assert message is not None, f"no notification for {run_name}; received {receiver.messages}"
    assert "manage-prompt" in message["subject"] and "Failed" in message["subject"]
    assert "create-version needs `template`" in message["body"]


def test_threshold_breach_reaches_the_default_alert_inbox(deployed: PlatformSettings) -> None:
    """The provisioned webhook block posts to the exporter's inbox: no external service needed."""
    # cpu_percent of the worker is watched by no other test, so the hourly de-duplication is fresh.
    policy = _policy(deployed, prompts=[], thresholds=[
        Threshold(metric="cpu_percent", component="prefect-worker", kind="static", above=-1)])
    health_check(_only(deployed, policy))
    # The server's automation sends it; on SQLite a locked database can hold an action for 60 s
    # (CI rehearsal: executed 60.4 s after it triggered), so the wait allows for that and more.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        inbox = httpx.get(deployed.notification_inbox_url, timeout=10).text
        if "prefect-worker" in inbox:
            break
        time.sleep(0.5)
    assert "prefect-worker: cpu_percent = " in inbox and "breaches cpu_percent > -1" in inbox


def test_unreachable_notification_target_is_reported_and_never_blocks(platform: PlatformSettings) -> None:
    (closed,) = free_ports(1)
    name = f"unreachable-{uuid.uuid4().hex[:6]}"
    CustomWebhookNotificationBlock(name=name, url=f"http://127.0.0.1:{closed}/hook").save(name)
    policy = _policy(platform, prompts=[], notification_block=name)
    report = health_check(_only(platform, policy, gateways=["gateway"]))
    alerts = report.component("notifications")
    assert alerts.status is HealthStatus.degraded
    assert f"127.0.0.1:{closed}" in alerts.detail and "unreachable" in alerts.detail
    assert report.component("gateway").status is HealthStatus.ok  # the rest of the run went on


def test_invalid_policy_stops_the_monitor_before_any_probe(platform: PlatformSettings) -> None:
    name = f"bad-{uuid.uuid4().hex[:6]}"
    bad = MonitoringPolicy.model_construct(state_dir=str(platform.state_dir),
                                           thresholds=[Threshold(metric="latncy_ms", above=5)])
    bad.save(name)
    store = MetricsStore(platform.state_dir / "monitoring" / "metrics.sqlite")
    runs_before = store.run_count()
    with pytest.raises(ConfigurationError, match=r"thresholds\[0\]\.metric: unknown metric 'latncy_ms'"):
        health_check(_only(platform, name, gateways=["gateway"]))
    assert store.run_count() == runs_before
