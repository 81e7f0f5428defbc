"""Prompt-aware health: error rate and latency per production prompt version, and shifts after a label move.

Two sources per version: the regression runs recorded in the prompt registry (their error rate
and p95 latency) and the monitor's own probe traffic (one request per run with the production
version, stored as component ``prompt:<name>@v<version>``). When `production` last moved from
version F to T, T's figures are compared with F's; a change in error rate or p95 latency past
the policy's limits is a shift, reported with the prompt, both versions and the change.
No Prefect here.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tasks.prompt_registry import LabelMove, RunRecord
from tasks.thresholds import Sample, summarise


def probe_component(prompt: str, version: int) -> str:
    return f"prompt:{prompt}@v{version}"


class VersionFigures(BaseModel):
    version: int
    error_samples: int = 0
    error_rate: float | None = None
    latency_samples: int = 0
    p95_latency_ms: float | None = None
    pass_rate: float | None = None  # from the latest regression run of this version


class PromptShift(BaseModel):
    prompt: str
    from_version: int
    to_version: int
    metric: str
    before: float
    after: float
    moved_at: datetime

    def describe(self) -> str:
        unit = " ms" if self.metric == "p95_latency_ms" else ""
        way = "rose" if self.after > self.before else "fell"
        return (f"prompt {self.prompt}: after production moved v{self.from_version} -> v{self.to_version} "
                f"({self.moved_at:%Y-%m-%d %H:%M} UTC), {self.metric} {way} from {self.before:g}{unit} to {self.after:g}{unit}")


class PromptHealth(BaseModel):
    prompt: str
    production_version: int | None
    figures: VersionFigures | None = None
    previous: VersionFigures | None = None
    last_move: LabelMove | None = None
    shifts: list[PromptShift] = Field(default_factory=list)
    detail: str = ""


def version_figures(version: int, records: list[RunRecord], probes: list[Sample], prompt: str) -> VersionFigures:
    component = probe_component(prompt, version)
    errors = [s.value for s in probes if s.component == component and s.metric == "error_rate"]
    latencies = [s.value for s in probes if s.component == component and s.metric == "latency_ms"]
    mine = [r for r in records if r.version == version]
    for record in mine:
        if isinstance(record.summary.get("error_rate"), (int, float)):
            errors.append(float(record.summary["error_rate"]))
        if isinstance(record.summary.get("p95_latency_ms"), (int, float)):
            latencies.append(float(record.summary["p95_latency_ms"]))
    latest = mine[-1].summary.get("pass_rate") if mine else None
    return VersionFigures(
        version=version,
        error_samples=len(errors),
        error_rate=round(sum(errors) / len(errors), 4) if errors else None,
        latency_samples=len(latencies),
        p95_latency_ms=round(summarise(latencies, "p95"), 1) if latencies else None,
        pass_rate=latest if isinstance(latest, (int, float)) else None,
    )


def assess_prompt(
    prompt: str, labels: dict[str, int], moves: list[LabelMove], records: list[RunRecord], probes: list[Sample], *,
    error_rate_shift: float, latency_shift_factor: float, min_samples: int,
) -> PromptHealth:
    production = labels.get("production")
    if production is None:
        return PromptHealth(prompt=prompt, production_version=None, detail="no production label")
    health = PromptHealth(prompt=prompt, production_version=production,
                          figures=version_figures(production, records, probes, prompt))
    last = next((m for m in reversed(moves) if m.label == "production"), None)
    health.last_move = last
    if last is None or last.from_version is None or last.from_version == last.to_version:
        health.detail = "production never moved"
        return health
    before = version_figures(last.from_version, records, probes, prompt)
    after = version_figures(last.to_version, records, probes, prompt)
    health.previous = before
    if min(before.error_samples, after.error_samples) >= min_samples and before.error_rate is not None \
            and after.error_rate is not None and abs(after.error_rate - before.error_rate) > error_rate_shift:
        health.shifts.append(PromptShift(prompt=prompt, from_version=last.from_version, to_version=last.to_version,
                                         metric="error_rate", before=before.error_rate, after=after.error_rate,
                                         moved_at=last.at))
    if min(before.latency_samples, after.latency_samples) >= min_samples and before.p95_latency_ms \
            and after.p95_latency_ms:
        ratio = after.p95_latency_ms / before.p95_latency_ms
        if ratio > latency_shift_factor or ratio < 1 / latency_shift_factor:
            health.shifts.append(PromptShift(prompt=prompt, from_version=last.from_version, to_version=last.to_version,
                                             metric="p95_latency_ms", before=before.p95_latency_ms,
                                             after=after.p95_latency_ms, moved_at=last.at))
    health.detail = "; ".join(s.describe() for s in health.shifts) or (
        f"no shift since production moved v{last.from_version} -> v{last.to_version}")
    return health
