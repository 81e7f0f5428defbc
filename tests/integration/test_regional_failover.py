"""Controlled regional failover and stepped failback on the real gateway and session stores."""

from __future__ import annotations

import httpx
import pytest

from deployments.settings import PlatformSettings
from deployments.stack.haproxy_config import BACKEND, PRIMARY_WEIGHT, STANDBY_WEIGHT
from deployments.stack.haproxy_runtime import HAProxyRuntime
from flows.regional_failover import failback, regional_failover
from tasks.regional_failover import FailbackPolicy, FailoverAborted
from tasks.session_topology import RedisNode, is_primary, replication_info
from tests.integration.test_failover_drills import await_healthy_platform


def served_by(settings: PlatformSettings, n: int = 6) -> list[str | None]:
    out = []
    for i in range(n):
        resp = httpx.post(f"{settings.gateway_url}/chat/completions", timeout=60, json={
            "model": settings.llm_model_alias, "max_tokens": 2, "messages": [{"role": "user", "content": f"hi {i}"}]})
        out.append(resp.headers.get("x-llmr-backend") if resp.status_code == 200 else f"HTTP {resp.status_code}")
    return out


def nodes(settings: PlatformSettings) -> tuple[RedisNode, RedisNode]:
    return (RedisNode("redis-region-a", settings.host, settings.region_a.redis_port),
            RedisNode("redis-region-b", settings.host, settings.region_b.redis_port))


def test_failover_then_stepped_failback(platform: PlatformSettings) -> None:
    await_healthy_platform(platform)
    a, b = nodes(platform)
    a.client().set("llmr:test:before-failover", "1")
    steps = regional_failover()
    assert [s["step"] for s in steps] == ["gateway", "sessions", "verify"]
    assert served_by(platform) == ["region-b"] * 6
    assert is_primary(b)
    b.client().set("llmr:test:written-on-region-b", "kept")  # a write region-a must get back

    log = failback(policy=FailbackPolicy(steps_percent=[10, 50, 100], hold_s=2, probe_rps=4))
    traffic = [e for e in log if e["step"] == "traffic"]
    assert [e["percent"] for e in traffic] == [10, 50, 100]
    assert all(e["failed"] == 0 for e in traffic)
    # At 10% region-b still carries most probes; at 100% region-a carries them.
    assert traffic[0]["served_by"].get("region-b", 0) > traffic[0]["served_by"].get("region-a", 0)
    assert traffic[-1]["served_by"].get("region-a", 0) >= traffic[-1]["requests"] - 1
    servers = HAProxyRuntime(platform.haproxy_socket, BACKEND).servers()
    assert (servers["region-a"].weight, servers["region-b"].weight) == (PRIMARY_WEIGHT, STANDBY_WEIGHT)
    assert is_primary(a) and replication_info(b)["master_link_status"] == "up"
    assert a.client().get("llmr:test:written-on-region-b") == "kept"
    assert b.client().get("llmr:test:before-failover") == "1"


def test_failback_aborts_back_to_region_b_when_probes_degrade(platform: PlatformSettings) -> None:
    await_healthy_platform(platform)
    regional_failover()
    # A p99 limit no answer can meet: the first step's probes breach it, so the failback aborts.
    with pytest.raises(FailoverAborted, match="failback aborted at 10%"):
        failback(policy=FailbackPolicy(steps_percent=[10, 100], hold_s=2, probe_rps=4, max_p99_ms=1))
    assert served_by(platform, 4) == ["region-b"] * 4
    assert is_primary(nodes(platform)[1])
    failback(policy=FailbackPolicy(steps_percent=[50, 100], hold_s=1))
    await_healthy_platform(platform)
