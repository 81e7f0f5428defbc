"""The health report: what every probe found, as a typed model, table rows and plain text."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, Field

from tasks.health_probes import HealthStatus, ProbeResult


class HealthReport(BaseModel):
    checked_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    results: list[ProbeResult] = Field(default_factory=list)

    @property
    def status(self) -> HealthStatus:
        if not self.results:
            return HealthStatus.down
        return max((r.status for r in self.results), key=lambda s: s.severity)

    def component(self, name: str) -> ProbeResult:
        for result in self.results:
            if result.component == name:
                return result
        raise KeyError(f"no probe result for component {name!r}; have {[r.component for r in self.results]}")

    def counts(self) -> dict[str, int]:
        return {s.value: sum(r.status == s for r in self.results) for s in HealthStatus}

    def table_rows(self) -> list[dict[str, str]]:
        return [
            {
                "component": r.component,
                "kind": r.kind,
                "status": r.status.value,
                "latency_ms": "" if r.latency_ms is None else f"{r.latency_ms:.1f}",
                "attempts": str(r.attempts),
                "target": r.target,
                "detail": r.detail,
            }
            for r in self.results
        ]


def render_text_table(rows: list[dict[str, str]], columns: list[str] | None = None) -> str:
    """A fixed-width table for terminals (the demo and the stack CLI print these)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    widths = {c: max(len(c), *(len(str(row.get(c, ""))) for row in rows)) for c in columns}
    line = "  ".join(c.upper().ljust(widths[c]) for c in columns)
    out = [line, "  ".join("-" * widths[c] for c in columns)]
    out += ["  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(line.rstrip() for line in out)


def component_name(kind: str, block_name: str) -> str:
    """'llm' + 'region-a' -> 'llm-region-a'; a block already named for its kind keeps its name."""
    return block_name if block_name == kind else f"{kind}-{block_name}"
