"""A drill's evidence: the JSON journal (every probe, action and request with its time), the
timeline PNG, and the markdown summary that shows both in the Prefect UI.

The files are written to the platform's state dir first (they survive any store being down),
then copied to an evidence StorageTarget so the artifacts can link to them.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tasks.drill_measurements import Marks, Measurements, Verdict


class JournalEntry(BaseModel):
    at: float
    kind: str  # probe | action | abort | error
    name: str
    detail: str = ""


class DrillJournal(BaseModel):
    experiment: dict[str, Any]
    run: str
    started_at: float
    status: str = "running"  # passed | failed
    reasons: list[str] = Field(default_factory=list)
    entries: list[JournalEntry] = Field(default_factory=list)
    marks: Marks | None = None
    measurements: Measurements | None = None
    slo_verdicts: list[Verdict] = Field(default_factory=list)
    steady_state_before: list[Verdict] = Field(default_factory=list)
    steady_state_after: list[Verdict] = Field(default_factory=list)
    gateway_observations: list[dict[str, Any]] = Field(default_factory=list)
    requests: list[dict[str, Any]] = Field(default_factory=list)
    lost_turn_detail: list[str] = Field(default_factory=list)

    def log(self, kind: str, name: str, detail: str = "", at: float | None = None) -> None:
        self.entries.append(JournalEntry(at=at or time.time(), kind=kind, name=name, detail=detail))


def summary_markdown(journal: DrillJournal, png: bytes | None, links: dict[str, str]) -> str:
    exp = journal.experiment
    m = journal.measurements
    lines = [f"# Failover drill `{exp['name']}`: **{journal.status.upper()}**", "",
             exp.get("description") or "", ""]
    if journal.reasons:
        lines += ["Reasons:", *[f"- {r}" for r in journal.reasons], ""]
    if m is not None:
        lines += ["| figure | value |", "|---|---|",
                  f"| time to detect | {_fmt(m.detect_ms, 'ms')} ({m.detect_source}) |",
                  f"| time to fail over | {_fmt(m.failover_ms, 'ms')} |",
                  f"| time to recover after rollback | {_fmt(m.recover_ms, 'ms')} |",
                  f"| failed requests | {m.failed} of {m.requests} ({m.failed_per_1000:g} per 1,000) |",
                  f"| session turns lost | {_fmt(m.lost_turns, '')} of {m.acknowledged_turns} acknowledged |"]
        for phase, p in m.phases.items():
            lines.append(f"| latency {phase} (p50 / p99) | {_fmt(p.p50_ms, 'ms')} / {_fmt(p.p99_ms, 'ms')} "
                         f"({p.requests} requests, {p.failed} failed) |")
        lines.append("")
    if journal.slo_verdicts:
        lines += ["| SLO | limit | measured | |", "|---|---|---|---|"]
        lines += [f"| {v.name} | {v.limit:g} | {_fmt(v.measured, '')} | {'ok' if v.passed else 'BREACHED'} |"
                  for v in journal.slo_verdicts]
        lines.append("")
    if png:
        lines += [f"![timeline](data:image/png;base64,{base64.b64encode(png).decode()})", ""]
    lines += [f"- {name}: {url}" for name, url in links.items()]
    return "\n".join(lines)


def write_local(journal: DrillJournal, png: bytes | None, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"journal": directory / "journal.json"}
    paths["journal"].write_text(journal.model_dump_json(indent=1))
    if png:
        paths["timeline"] = directory / "timeline.png"
        paths["timeline"].write_bytes(png)
    return paths


def upload_evidence(location, files: dict[str, Path], key_prefix: str, expires_s: int = 7 * 86400) -> dict[str, str]:  # noqa: ANN001
    """Copy the files to an S3 location; returns presigned URLs (the UI's links need no credentials)."""
    client = location.client(max_attempts=3, read_timeout=10.0)
    urls = {}
    for name, path in files.items():
        key = location.full_key(f"{key_prefix}/{path.name}")
        content_type = "image/png" if path.suffix == ".png" else "application/json"
        client.put_object(Bucket=location.bucket, Key=key, Body=path.read_bytes(), ContentType=content_type)
        urls[name] = client.generate_presigned_url("get_object", Params={"Bucket": location.bucket, "Key": key},
                                                   ExpiresIn=expires_s)
    return urls


def _fmt(value: float | int | None, unit: str) -> str:
    if value is None:
        return "not observed"
    return f"{value:,.0f} {unit}".strip() if isinstance(value, float) and value >= 10 else f"{value:g} {unit}".strip()


def journal_json(journal: DrillJournal) -> dict[str, Any]:
    return json.loads(journal.model_dump_json())
