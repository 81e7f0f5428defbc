"""The monitor's snapshot of the platform, and the `platform-status` page drawn from it.

One ``MonitorSnapshot`` per monitor run: a row per component (status, latency, error rate,
resources, a 24-hour trend), GPUs, breaches, prompt health and the pipeline summary. The run
writes it as JSON beside the store; the /metrics exporter serves it, and ``render_markdown``
turns it into the artifact a person reads (trend charts as unicode sparklines, which every
markdown renderer shows, the Prefect UI included).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from tasks.platform_summary import PlatformSummary
from tasks.prompt_health import PromptHealth
from tasks.resource_usage import GpuUsage
from tasks.thresholds import Breach

SPARK = "▁▂▃▄▅▆▇█"
STATUS_MARK = {"ok": "🟢 ok", "degraded": "🟡 degraded", "down": "🔴 down"}


class ComponentRow(BaseModel):
    component: str
    kind: str
    status: str
    latency_ms: float | None = None
    error_rate: float = 0.0
    cpu_percent: float | None = None
    memory_rss_bytes: int | None = None
    cpu_seconds_total: float | None = None
    replication_lag_bytes: float | None = None
    trend: list[float | None] = Field(default_factory=list, description="Mean latency per hour, oldest first.")
    detail: str = ""


class MonitorSnapshot(BaseModel):
    at: datetime
    run_id: str
    components: list[ComponentRow]
    gpu_present: bool = False
    gpu_detail: str = ""
    gpus: list[GpuUsage] = Field(default_factory=list)
    breaches: list[Breach] = Field(default_factory=list)
    breach_counts: dict[str, int] = Field(default_factory=dict, description="'component|metric' -> breaches kept.")
    runs_total: int = 0
    summary: PlatformSummary = Field(default_factory=PlatformSummary)
    prompts: list[PromptHealth] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="What the monitor could not read, and why.")

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(self.model_dump_json())
        tmp.replace(path)  # readers (the exporter) never see a half-written file

    @classmethod
    def load(cls, path: Path) -> MonitorSnapshot | None:
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except (OSError, ValueError):
            return None


def sparkline(values: list[float | None]) -> str:
    """▁▃█ per value scaled between the series' min and max; a gap (no data) is '·'."""
    present = [v for v in values if v is not None]
    if not present:
        return "·" * len(values)
    low, high = min(present), max(present)
    span = high - low
    out = []
    for v in values:
        if v is None:
            out.append("·")
        else:
            out.append(SPARK[0] if span == 0 else SPARK[min(len(SPARK) - 1, int((v - low) / span * (len(SPARK) - 1) + 0.5))])
    return "".join(out)


def _mib(n: float | None) -> str:
    return "" if n is None else f"{n / 2**20:,.0f} MiB"


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render_markdown(snap: MonitorSnapshot) -> str:
    now = snap.at
    lines = [f"# Platform status, {now:%Y-%m-%d %H:%M:%S} UTC", ""]
    worst = max((r.status for r in snap.components), key=lambda s: {"ok": 0, "degraded": 1, "down": 2}.get(s, 2),
                default="down")
    lines += [f"**Overall: {STATUS_MARK.get(worst, worst)}**, {len(snap.components)} components, "
              f"{len(snap.breaches)} threshold breach(es) this run.", ""]
    lines += ["| component | status | latency | error rate | CPU | memory | latency, last 24 h (hourly) |",
              "|---|---|---:|---:|---:|---:|---|"]
    for r in snap.components:
        latency = "" if r.latency_ms is None else f"{r.latency_ms:,.0f} ms"
        cpu = "" if r.cpu_percent is None else f"{r.cpu_percent:.0f} %"
        lines.append(f"| {r.component} | {STATUS_MARK.get(r.status, r.status)} | {latency} | {r.error_rate:.0%} | "
                     f"{cpu} | {_mib(r.memory_rss_bytes)} | `{sparkline(r.trend)}` |")
    gpu = snap.gpu_detail if not snap.gpu_present else ", ".join(
        f"GPU{g.index} {g.name}: {g.utilization_percent:.0f} %, {_mib(g.memory_used_bytes)}" for g in snap.gpus)
    lines += ["", f"GPU: {gpu}", ""]
    if snap.breaches:
        lines += ["## Threshold breaches", ""] + [f"- {b.describe()}" for b in snap.breaches] + [""]

    s = snap.summary
    lines += ["## Pipelines", ""]
    backup = f"last success {_age(now, s.backup.last_success_at)}"
    if s.backup.last_failure_at and (s.backup.last_success_at is None or s.backup.last_failure_at > s.backup.last_success_at):
        backup += f"; **last run failed** {_age(now, s.backup.last_failure_at)}: {s.backup.last_error}"
    lines.append(f"- **Backup**: {backup}")
    if s.replication:
        for rep in s.replication:
            lines.append(f"- **Replication** {rep.link}: lag {rep.lag_s or 0:.1f} s, {rep.pending_objects or 0} objects / "
                         f"{rep.pending_bytes or 0:,} bytes pending (reported {_age(now, rep.at)})")
    else:
        lines.append("- **Replication**: never reported")
    if s.drill:
        figures = ", ".join(f"{k} {v:g}" for k, v in sorted(s.drill.figures.items()))
        lines.append(f"- **Last drill** {s.drill.name}: {'passed' if s.drill.passed else '**failed**'} "
                     f"{_age(now, s.drill.at)}" + (f" ({figures})" if figures else ""))
    else:
        lines.append("- **Last drill**: never")
    lines += ["", "## Production prompts", ""]
    if not snap.prompts:
        lines.append("(no prompt watched)")
    for p in snap.prompts:
        f = p.figures
        figures = "" if f is None else (
            f" pass rate {'n/a' if f.pass_rate is None else f'{f.pass_rate:.0%}'}, error rate "
            f"{'n/a' if f.error_rate is None else f'{f.error_rate:.0%}'}, p95 "
            f"{'n/a' if f.p95_latency_ms is None else f'{f.p95_latency_ms:,.0f} ms'}")
        version = "none" if p.production_version is None else f"v{p.production_version}"
        lines.append(f"- **{p.prompt}** production {version}:{figures}" + (f" — {p.detail}" if p.detail else ""))
    if snap.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in snap.notes]
    return "\n".join(lines)
