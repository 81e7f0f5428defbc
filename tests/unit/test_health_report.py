import pytest

from tasks.health_probes import HealthStatus, ProbeResult
from tasks.health_report import HealthReport, component_name, render_text_table


def _r(name: str, status: HealthStatus) -> ProbeResult:
    return ProbeResult(component=name, kind="k", target="t", status=status, latency_ms=1.25, attempts=1)


def test_overall_status_is_the_worst_component() -> None:
    report = HealthReport(results=[_r("a", HealthStatus.ok), _r("b", HealthStatus.degraded)])
    assert report.status is HealthStatus.degraded
    report.results.append(_r("c", HealthStatus.down))
    assert report.status is HealthStatus.down
    assert report.counts() == {"ok": 1, "degraded": 1, "down": 1}


def test_an_empty_report_is_not_healthy() -> None:
    assert HealthReport().status is HealthStatus.down


def test_rows_and_lookup() -> None:
    report = HealthReport(results=[_r("gateway", HealthStatus.ok)])
    assert report.table_rows()[0] == {
        "component": "gateway", "kind": "k", "status": "ok", "latency_ms": "1.2", "attempts": "1", "target": "t", "detail": "",
    }
    assert report.component("gateway").status is HealthStatus.ok
    with pytest.raises(KeyError, match="nope"):
        report.component("nope")


def test_text_table_aligns_columns() -> None:
    text = render_text_table([{"a": "1", "bb": "long value"}, {"a": "333", "bb": "x"}])
    lines = text.splitlines()
    assert lines[0].split() == ["A", "BB"]
    assert lines[2].index("long value") == lines[3].index("x")


def test_component_names() -> None:
    assert component_name("llm", "region-a") == "llm-region-a"
    assert component_name("gateway", "gateway") == "gateway"
