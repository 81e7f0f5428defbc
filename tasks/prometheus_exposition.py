"""The monitor's latest snapshot as Prometheus metric families (text exposition format).

Built fresh from the snapshot file on every scrape, so the exporter holds no state of its own
and a restarted exporter serves the same figures. Names follow Prometheus conventions: the
`llmr_` namespace, base units in the name (`_seconds`, `_bytes`, `_ratio`), `_total` counters.
A family with nothing to report (no drill ran yet) is still declared, with no samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from tasks.platform_status import MonitorSnapshot

STATUS_CODE = {"ok": 0, "degraded": 1, "down": 2}


def _ts(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def _add(family: Metric, labels: list[str], value: float | None, scale: float = 1.0) -> None:
    """One sample, unless there is nothing to report (a missing figure is absent, never 0)."""
    if value is not None:
        family.add_metric(labels, value * scale)


def metric_families(snap: MonitorSnapshot | None, now: datetime | None = None) -> list[Metric]:
    now = now or datetime.now(timezone.utc)
    g = GaugeMetricFamily
    up = g("llmr_component_up", "1 when the component answered its probe (ok or degraded), 0 when down",
           labels=["component", "kind"])
    status = g("llmr_component_status", "Probe verdict: 0 ok, 1 degraded, 2 down", labels=["component", "kind"])
    latency = g("llmr_probe_latency_seconds", "Response time of the component's health probe", labels=["component"])
    errors = g("llmr_probe_error_ratio", "Failed probe attempts / attempts in the last monitor run", labels=["component"])
    cpu_util = g("llmr_process_cpu_utilization_ratio", "CPU use of the component's processes (1.0 = one core)",
                 labels=["component"])
    cpu_total = CounterMetricFamily("llmr_process_cpu_seconds", "CPU time used by the component's processes",
                                    labels=["component"])
    memory = g("llmr_process_resident_memory_bytes", "Resident memory of the component's processes", labels=["component"])
    gpu_present = g("llmr_gpu_present", "1 when nvidia-smi reports at least one GPU")
    gpu_util = g("llmr_gpu_utilization_ratio", "GPU utilisation", labels=["gpu", "name"])
    gpu_mem = g("llmr_gpu_memory_used_bytes", "GPU memory in use", labels=["gpu", "name"])
    session_lag = g("llmr_session_replication_lag_bytes", "Bytes a Redis replica is behind its primary",
                    labels=["component"])
    repl_lag = g("llmr_replication_lag_seconds", "Object replication lag reported by the last replication run",
                 labels=["link"])
    repl_pending = g("llmr_replication_pending_bytes", "Bytes not yet replicated", labels=["link"])
    repl_pending_objects = g("llmr_replication_pending_objects", "Objects not yet replicated", labels=["link"])
    backup_ts = g("llmr_backup_last_success_timestamp_seconds", "When the last backup succeeded (Unix time)")
    backup_age = g("llmr_backup_last_success_age_seconds", "Seconds since the last successful backup")
    drill_ts = g("llmr_drill_last_run_timestamp_seconds", "When the last failover drill finished (Unix time)")
    drill_passed = g("llmr_drill_last_passed", "1 when the last failover drill passed, 0 when it failed")
    drill_duration = g("llmr_drill_last_duration_seconds",
                       "Durations measured by the last failover drill (time to detect, fail over, recover; latencies)",
                       labels=["figure"])
    drill_figure = g("llmr_drill_last_figure", "Counts measured by the last failover drill (requests, failed, lost turns)",
                     labels=["figure"])
    prompt_pass = g("llmr_prompt_pass_ratio", "Pass rate of the production prompt version in its latest regression run",
                    labels=["prompt", "version"])
    prompt_errors = g("llmr_prompt_error_ratio", "Error rate of the production prompt version (regression + probes)",
                      labels=["prompt", "version"])
    prompt_latency = g("llmr_prompt_latency_p95_seconds", "p95 latency of the production prompt version",
                       labels=["prompt", "version"])
    prompt_shift = g("llmr_prompt_shift", "1 when the last production label move shifted error rate or latency",
                     labels=["prompt", "from_version", "to_version", "metric"])
    breaches = CounterMetricFamily("llmr_threshold_breaches", "Threshold breaches within the store's retention",
                                   labels=["component", "metric"])
    runs = CounterMetricFamily("llmr_monitor_runs", "Monitor runs within the store's retention")
    last_run = g("llmr_monitor_last_run_timestamp_seconds", "When the monitor last ran (Unix time)")
    families: list[Metric] = [up, status, latency, errors, cpu_util, cpu_total, memory, gpu_present, gpu_util, gpu_mem,
                              session_lag, repl_lag, repl_pending, repl_pending_objects, backup_ts, backup_age,
                              drill_ts, drill_passed, drill_duration, drill_figure, prompt_pass, prompt_errors, prompt_latency,
                              prompt_shift, breaches, runs, last_run]
    if snap is None:
        return families

    for r in snap.components:
        up.add_metric([r.component, r.kind], 0.0 if r.status == "down" else 1.0)
        status.add_metric([r.component, r.kind], STATUS_CODE.get(r.status, 2))
        errors.add_metric([r.component], r.error_rate)
        _add(latency, [r.component], r.latency_ms, 1 / 1000)
        _add(cpu_util, [r.component], r.cpu_percent, 1 / 100)
        _add(cpu_total, [r.component], r.cpu_seconds_total)
        _add(memory, [r.component], r.memory_rss_bytes)
        _add(session_lag, [r.component], r.replication_lag_bytes)
    gpu_present.add_metric([], 1.0 if snap.gpu_present else 0.0)
    for gpu in snap.gpus:
        gpu_util.add_metric([str(gpu.index), gpu.name], gpu.utilization_percent / 100)
        gpu_mem.add_metric([str(gpu.index), gpu.name], gpu.memory_used_bytes)

    s = snap.summary
    for rep in s.replication:
        _add(repl_lag, [rep.link], rep.lag_s)
        _add(repl_pending, [rep.link], rep.pending_bytes)
        _add(repl_pending_objects, [rep.link], rep.pending_objects)
    if s.backup.last_success_at is not None:
        backup_ts.add_metric([], _ts(s.backup.last_success_at))
        backup_age.add_metric([], max(0.0, (now - s.backup.last_success_at).total_seconds()))
    if s.drill is not None:
        drill_ts.add_metric([], _ts(s.drill.at))
        drill_passed.add_metric([], 1.0 if s.drill.passed else 0.0)
        for name, value in sorted(s.drill.figures.items()):
            if name.endswith("_ms"):
                drill_duration.add_metric([name[:-3]], value / 1000)
            elif name.endswith("_s"):
                drill_duration.add_metric([name[:-2]], value)
            else:
                drill_figure.add_metric([name], value)

    for p in snap.prompts:
        if p.production_version is None or p.figures is None:
            continue
        labels = [p.prompt, str(p.production_version)]
        _add(prompt_pass, labels, p.figures.pass_rate)
        _add(prompt_errors, labels, p.figures.error_rate)
        _add(prompt_latency, labels, p.figures.p95_latency_ms, 1 / 1000)
        for shift in p.shifts:
            prompt_shift.add_metric([p.prompt, str(shift.from_version), str(shift.to_version), shift.metric], 1.0)

    for key, count in sorted(snap.breach_counts.items()):
        component, _, metric = key.partition("|")
        breaches.add_metric([component, metric], count)
    runs.add_metric([], snap.runs_total)
    last_run.add_metric([], _ts(snap.at))
    return families


class SnapshotCollector(Collector):
    """A prometheus_client collector that reads the snapshot through ``load`` at every scrape."""

    def __init__(self, load, now: datetime | None = None) -> None:  # noqa: ANN001 - () -> MonitorSnapshot | None
        self._load, self._now = load, now

    def collect(self) -> Iterator[Metric]:
        yield from metric_families(self._load(), self._now)


def exposition(snap: MonitorSnapshot | None, now: datetime | None = None) -> bytes:
    """The text format; ages (last backup) are computed at ``now``, the scrape time by default."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snap, now))
    return generate_latest(registry)
