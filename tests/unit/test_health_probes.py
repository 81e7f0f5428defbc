import time
from typing import Any

import fsspec
import httpx
import pytest

from tasks.errors import ProbeFailed
from tasks.health_probes import (
    CheckOutcome,
    HealthStatus,
    ProbePolicy,
    ProbeResult,
    flag_split_brain,
    llm_completion,
    redis_replication,
    run_probe,
    storage_round_trip,
)

FAST = ProbePolicy(timeout_s=2, attempts=3, backoff_s=0.0, degraded_latency_ms=500)


def test_a_component_that_keeps_failing_is_down_after_every_attempt() -> None:
    calls = []

    def check() -> CheckOutcome:
        calls.append(1)
        raise ConnectionRefusedError("connection refused")

    result = run_probe("llm-region-a", "llm", "http://x", check, FAST)
    assert result.status is HealthStatus.down
    assert len(calls) == 3 and result.attempts == 3
    assert "connection refused" in result.detail and result.latency_ms is None


def test_a_failure_then_success_is_ok_and_counts_the_failed_attempt() -> None:
    outcomes = iter([ProbeFailed("blip"), CheckOutcome(detail="fine")])

    def check() -> CheckOutcome:
        item = next(outcomes)
        if isinstance(item, Exception):
            raise item
        return item

    result = run_probe("c", "k", "t", check, FAST)
    assert result.status is HealthStatus.ok and result.attempts == 2
    assert result.metrics["failed_attempts"] == 1


def test_slow_answers_are_degraded() -> None:
    def check() -> CheckOutcome:
        time.sleep(0.6)
        return CheckOutcome(detail="fine")

    result = run_probe("c", "k", "t", check, FAST)
    assert result.status is HealthStatus.degraded and result.detail.startswith("slow:")


def test_a_hung_component_times_out_and_is_down() -> None:
    policy = ProbePolicy(timeout_s=0.2, attempts=1)

    def check() -> CheckOutcome:
        time.sleep(2)
        return CheckOutcome(detail="too late")

    result = run_probe("c", "k", "t", check, policy)
    assert result.status is HealthStatus.down and "no answer within 0.2 s" in result.detail


def test_storage_round_trip_leaves_nothing_behind() -> None:
    fs = fsspec.filesystem("memory", skip_instance_cache=True)
    outcome = storage_round_trip(fs, "/health-unit")
    assert outcome.metrics["bytes"] == 4096
    assert [p for p in fs.find("/health-unit")] == []


def test_storage_round_trip_catches_corrupted_reads() -> None:
    class CorruptingFS:
        store: dict[str, bytes] = {}

        def pipe_file(self, key: str, data: bytes) -> None:
            self.store[key] = data

        def cat_file(self, key: str) -> bytes:
            return b"x" + self.store[key][1:]

        def rm_file(self, key: str) -> None:
            del self.store[key]

    with pytest.raises(ProbeFailed, match="differ"):
        storage_round_trip(CorruptingFS(), "root")


def _client(handler: Any) -> httpx.Client:
    return httpx.Client(base_url="http://llm.test/v1/", transport=httpx.MockTransport(handler))


def _chat(request: httpx.Request, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        200, headers=headers or {},
        json={"choices": [{"message": {"content": "OK"}}], "usage": {"completion_tokens": 1}},
    )


def test_llm_completion_reports_the_region_that_served() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        return _chat(request, {"X-LLMR-Backend": "region-b"})

    with _client(handler) as client:
        outcome = llm_completion(client, "m")
    assert outcome.degraded is None
    assert outcome.metrics["served_by"] == "region-b" and "served by region-b" in outcome.detail


def test_llm_serving_another_model_is_degraded() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "other"}]})
        return _chat(request)

    with _client(handler) as client:
        outcome = llm_completion(client, "m")
    assert outcome.degraded is not None and "'m' not served" in outcome.degraded


def test_llm_error_status_fails_the_check_with_the_status() -> None:
    with _client(lambda r: httpx.Response(503, text="overloaded")) as client:
        with pytest.raises(ProbeFailed, match="HTTP 503"):
            llm_completion(client, "m", list_models=False)


def test_llm_answer_without_choices_fails_the_check() -> None:
    with _client(lambda r: httpx.Response(200, json={"error": "x"})) as client:
        with pytest.raises(ProbeFailed, match="without choices"):
            llm_completion(client, "m", list_models=False)


class FakeRedis:
    def __init__(self, info: dict[str, Any], ping: bool = True) -> None:
        self._info, self._ping = info, ping

    def ping(self) -> bool:
        return self._ping

    def info(self, section: str) -> dict[str, Any]:
        assert section == "replication"
        return self._info


def test_primary_reports_its_replicas() -> None:
    outcome = redis_replication(FakeRedis({"role": "master", "connected_slaves": 1, "master_repl_offset": 10}), FAST, None)
    assert outcome.degraded is None and outcome.metrics["role"] == "primary" and outcome.metrics["replicas"] == 1


def _replica(offset: int, link: str = "up") -> FakeRedis:
    return FakeRedis({"role": "slave", "master_host": "127.0.0.1", "master_port": 6391,
                      "master_link_status": link, "slave_repl_offset": offset, "master_link_down_since_seconds": 7})


def test_replica_lag_is_measured_against_the_primary_offset() -> None:
    primary = FakeRedis({"role": "master", "master_repl_offset": 1500})
    outcome = redis_replication(_replica(1000), FAST, lambda host, port: primary)
    assert outcome.degraded is None and outcome.metrics["lag_bytes"] == 500


def test_replica_far_behind_is_degraded() -> None:
    primary = FakeRedis({"role": "master", "master_repl_offset": 5_000_000})
    outcome = redis_replication(_replica(0), FAST, lambda host, port: primary)
    assert outcome.degraded is not None and "lags 5000000 bytes" in outcome.degraded


def test_replica_with_its_link_down_is_degraded() -> None:
    outcome = redis_replication(_replica(0, link="down"), FAST, lambda host, port: None)
    assert outcome.degraded == "replication link to 127.0.0.1:6391 is down"
    assert outcome.metrics["link_down_s"] == 7


def test_unreachable_primary_leaves_lag_unknown_not_failed() -> None:
    def connect(host: str, port: int) -> Any:
        raise ConnectionError("refused")

    outcome = redis_replication(_replica(5), FAST, connect)
    assert outcome.degraded is None and outcome.metrics["lag_bytes"] is None


def _store(name: str, role: str, status: HealthStatus = HealthStatus.ok) -> ProbeResult:
    return ProbeResult(component=f"sessions-{name}", kind="sessions", target=f"redis://{name}", status=status,
                       detail=role, metrics={"role": role})


def test_two_primary_session_stores_are_a_split_brain() -> None:
    llm = ProbeResult(component="llm-region-a", kind="llm", target="x", status=HealthStatus.ok, metrics={"role": "primary"})
    healthy = [_store("region-a", "primary"), _store("region-b", "replica"), llm]
    assert flag_split_brain(healthy, ProbePolicy()) == healthy
    split = flag_split_brain([_store("region-a", "primary"), _store("region-b", "primary"), llm], ProbePolicy())
    assert [r.status for r in split] == [HealthStatus.degraded, HealthStatus.degraded, HealthStatus.ok]
    assert all("split brain: 2 session stores are primary (sessions-region-a, sessions-region-b)" in r.detail
               for r in split[:2])
    # a store that is down is not a primary anyone writes to; independent stores can opt out
    assert flag_split_brain([_store("region-a", "primary"), _store("region-b", "primary", HealthStatus.down)],
                            ProbePolicy())[0].status is HealthStatus.ok
    independent = [_store("region-a", "primary"), _store("region-b", "primary")]
    assert flag_split_brain(independent, ProbePolicy(one_session_primary=False)) == independent
