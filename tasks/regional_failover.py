"""Controlled regional failover and gradual failback, on the gateway's runtime API and Redis roles.

Failover: region-a's gateway server goes to maintenance (region-b, the standby, takes all new
traffic), region-b's session store is promoted, and probes through the gateway confirm that
region-b answers. Failback: region-a's store re-syncs from region-b; traffic returns in weighted
steps (e.g. 10% -> 50% -> 100%), each held only while probes stay healthy, with an automatic
abort back to region-b if they degrade; last, the session stores swap roles back with writes
paused for a moment so no acknowledged write is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from pydantic import BaseModel, Field, field_validator

from deployments.settings import PlatformSettings
from deployments.stack.haproxy_config import BACKEND, PRIMARY_WEIGHT, STANDBY_WEIGHT
from deployments.stack.haproxy_runtime import HAProxyRuntime
from tasks.drill_measurements import percentile
from tasks.errors import ConfigurationError, LLMResilienceError
from tasks.session_topology import RedisNode, follow, is_primary, promote, switchover, wait_in_sync
from tasks.strict_input import StrictInput


class FailoverAborted(LLMResilienceError):
    """Probes degraded during a step; traffic was moved back to the secondary region."""


class ProbeOutcome(BaseModel):
    requests: int
    failed: int
    served_by: dict[str, int]
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 1.0


class FailbackPolicy(StrictInput):
    """How traffic returns to the primary region."""

    steps_percent: list[int] = Field(default=[10, 50, 100], min_length=1)
    hold_s: float = Field(default=5.0, gt=0, le=3600, description="How long each step is held and probed.")
    probe_rps: float = Field(default=4.0, gt=0, le=50)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p99_ms: float = Field(default=3000, gt=0)

    @field_validator("steps_percent")
    @classmethod
    def _increasing_to_100(cls, steps: list[int]) -> list[int]:
        if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)) or steps[-1] != 100:
            raise ValueError(f"steps_percent {steps} must increase strictly within 1..100 and end at 100")
        return steps


@dataclass
class StepLog:
    entries: list[dict] = field(default_factory=list)

    def add(self, step: str, detail: str, **figures: object) -> None:
        self.entries.append({"at": time.time(), "step": step, "detail": detail, **figures})


def probe_gateway(url: str, model: str, *, requests: int, rps: float, timeout_s: float = 20.0) -> ProbeOutcome:
    """Chat completions through the gateway at a steady rate; which region served each."""
    served: dict[str, int] = {}
    failed = 0
    latencies = []
    with httpx.Client(timeout=timeout_s) as client:
        for i in range(requests):
            start = time.perf_counter()
            try:
                resp = client.post(f"{url}/chat/completions", json={
                    "model": model, "max_tokens": 4, "temperature": 0,
                    "messages": [{"role": "user", "content": f"Probe {i}: say ok."}]})
                ok = resp.status_code == 200
                backend = resp.headers.get("x-llmr-backend", "unknown")
            except httpx.HTTPError:
                ok, backend = False, "none"
            elapsed = time.perf_counter() - start
            if ok:
                served[backend] = served.get(backend, 0) + 1
                latencies.append(elapsed * 1000)
            else:
                failed += 1
            time.sleep(max(0.0, 1 / rps - elapsed))
    return ProbeOutcome(requests=requests, failed=failed, served_by=served, p99_ms=percentile(latencies, 99))


@dataclass
class RegionalControl:
    """The platform's two regions as the failover flows see them."""

    settings: PlatformSettings
    probe: Callable[..., ProbeOutcome] = probe_gateway

    def __post_init__(self) -> None:
        s = self.settings
        self.primary, self.secondary = s.region_a.name, s.region_b.name
        self.runtime = HAProxyRuntime(s.haproxy_socket, BACKEND)
        self.redis = {r.name: RedisNode(f"redis-{r.name}", s.host, r.redis_port) for r in s.regions}

    def _probe(self, requests: int, rps: float = 4.0) -> ProbeOutcome:
        return self.probe(self.settings.gateway_url, self.settings.llm_model_alias, requests=requests, rps=rps)

    def fail_over(self, *, verify_requests: int = 8, log: StepLog | None = None) -> StepLog:
        if verify_requests < 1:  # no probe would "verify" a failover nobody checked
            raise ConfigurationError(f"verify_requests: {verify_requests}: at least one probe must verify region-b answers")
        log = log if log is not None else StepLog()
        servers = self.runtime.servers()
        if not servers[self.secondary].serving:
            raise FailoverAborted(f"{self.secondary} is not serving at the gateway "
                                  f"({servers[self.secondary].operational}); failing over to it would drop traffic")
        self.runtime.set_state(self.primary, "maint")
        log.add("gateway", f"{self.primary} in maintenance: new requests go to {self.secondary}")
        promote(self.redis[self.secondary])
        log.add("sessions", f"redis-{self.secondary} promoted to primary")
        outcome = self._probe(verify_requests)
        log.add("verify", f"{verify_requests} probes through the gateway", **outcome.model_dump())
        stray = {k: v for k, v in outcome.served_by.items() if k != self.secondary}
        if outcome.failed or stray:
            raise FailoverAborted(f"after failover, probes failed {outcome.failed}/{outcome.requests} "
                                  f"or were served elsewhere {stray}")
        if not is_primary(self.redis[self.secondary]):
            raise FailoverAborted(f"redis-{self.secondary} is not primary after promotion")
        return log

    def fail_back(self, policy: FailbackPolicy, log: StepLog | None = None) -> StepLog:
        """``log`` collects the steps as they happen, so an aborted failback still shows them."""
        log = log if log is not None else StepLog()
        a, b = self.redis[self.primary], self.redis[self.secondary]
        if is_primary(b):  # region-b was promoted: region-a re-syncs from it before anything moves
            follow(a, b)
            took = wait_in_sync(b, a, timeout_s=120)
            log.add("sessions", f"redis-{self.primary} re-synced from redis-{self.secondary} in {took:.1f} s")
        self.runtime.set_weight(self.primary, 1)
        self.runtime.set_state(self.primary, "ready")
        for pct in policy.steps_percent:
            # Complementary weights out of 256: 10% -> 26 / 230 ... 100% -> the normal 255 / 1.
            a_weight = PRIMARY_WEIGHT if pct == 100 else max(1, round(256 * pct / 100))
            self.runtime.set_weight(self.primary, a_weight)
            self.runtime.set_weight(self.secondary, STANDBY_WEIGHT if pct == 100 else 256 - a_weight)
            outcome = self._probe(max(1, int(policy.hold_s * policy.probe_rps)), policy.probe_rps)
            log.add("traffic", f"{pct}% to {self.primary}", percent=pct, **outcome.model_dump())
            if outcome.error_rate > policy.max_error_rate or (outcome.p99_ms or 0) > policy.max_p99_ms:
                self.abort_to_secondary()
                log.add("abort", f"probes degraded at {pct}%: error rate {outcome.error_rate:.3f}, "
                                 f"p99 {outcome.p99_ms} ms; traffic back on {self.secondary}")
                raise FailoverAborted(f"failback aborted at {pct}%: error rate {outcome.error_rate:.3f} "
                                      f"(limit {policy.max_error_rate}), p99 {outcome.p99_ms} ms "
                                      f"(limit {policy.max_p99_ms:g}); traffic is on {self.secondary}")
        if is_primary(b) and not is_primary(a):
            paused = switchover(b, a)
            log.add("sessions", f"redis-{self.primary} primary again; writes paused {paused * 1000:.0f} ms")
        return log

    def abort_to_secondary(self) -> None:
        self.runtime.set_state(self.primary, "maint")

    def traffic_state(self) -> dict[str, dict[str, object]]:
        return {name: {"serving": s.serving, "weight": s.weight, "maintenance": s.maintenance}
                for name, s in self.runtime.servers().items()}

