"""Prompt regression on the real platform: the registry in the region-a moto bucket, flows
reporting to the session's Prefect server, the real SmolLM2 model through the gateway, and the
scripted endpoint for what the real model cannot do on cue (a version that regresses)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from blocks import LLMEndpoint, StorageTarget
from deployments.settings import PlatformSettings
from flows.prompt_regression import (
    PromotionRequest,
    PromptChange,
    RegressionRequest,
    manage_prompt,
    promote_prompt,
    prompt_regression,
)
from tasks.prompt_client import PromptClient
from tasks.prompt_gate import Thresholds
from tasks.prompt_registry import PromptNotFound, PromptRegistry, create_exclusive
from tasks.prompt_runner import RunnerPolicy
from tasks.prompt_statistics import Verdict
from tasks.prompt_suite import SuiteError
from tests.scripted_llm import ScriptedLLM
from tests.server_events import server_copy, wait_for_events

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prompts"
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
SCRIPT = {"rules": [{"match": ["[regress]"], "reply": "wrong"},
                    {"match": ["[regress-some]", "alpha"], "reply": "wrong"},
                    {"match": ["[regress-some]", "bravo"], "reply": "wrong"}]}


@pytest.fixture
def registry_ref(platform: PlatformSettings):
    from tasks.prompt_regression import RegistryRef

    return RegistryRef(storage_block="region-a", prefix=f"prompts-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def scripted(platform: PlatformSettings):
    with ScriptedLLM(SCRIPT) as server:
        LLMEndpoint(base_url=server.base_url, model="scripted", read_timeout_s=10).save("scripted-llm", overwrite=True)
        yield server


@pytest.fixture(scope="module")
def echo_suite(tmp_path_factory) -> str:
    import yaml

    path = tmp_path_factory.mktemp("suite") / "echo.yaml"
    path.write_text(yaml.safe_dump({"name": "echo", "cases": [
        {"id": w, "vars": {"answer": w}, "assert": [{"type": "equals", "value": w}]} for w in WORDS]}))
    return str(path)


def _scripted_request(cls, registry_ref, suite, tmp_path, **kw):
    return cls(prompt="echo", suite_path=suite, endpoint_block="scripted-llm", registry=registry_ref,
               runner=RunnerPolicy(samples=2, max_concurrency=4, backoff_base_s=0.01, cache_dir=str(tmp_path / "cache")),
               thresholds=Thresholds(min_pass_rate=0.7), **kw)


def test_real_model_candidate_is_compared_and_promoted(platform, registry_ref, tmp_path):
    """SmolLM2 through the gateway: a reworded prompt that answers the same is promoted."""
    params = {"temperature": 0, "max_tokens": 12}
    manage_prompt(PromptChange(prompt="capitals", template="{{question}}", params=params, label="production",
                               message="baseline", author="test", registry=registry_ref))
    out = manage_prompt(PromptChange(prompt="capitals", template="Answer briefly. {{question}}", params=params,
                                     label="candidate", message="shorter answers", author="test",
                                     registry=registry_ref))
    assert out["labels"] == {"production": 1, "candidate": 2}
    started = time.time()
    report = promote_prompt(PromotionRequest(
        prompt="capitals", suite_path=str(EXAMPLES / "capitals.yaml"), endpoint_block="gateway",
        registry=registry_ref, runner=RunnerPolicy(samples=2, max_concurrency=1, cache_dir=str(tmp_path / "cache")),
        thresholds=Thresholds(min_pass_rate=0.8, max_p95_latency_ms=120000)))
    assert [v.version for v in report.versions] == [1, 2]
    for v in report.versions:
        assert v.pass_rate == 1.0, v.cases
        assert v.error_rate == 0.0 and v.p95_latency_ms > 0
    assert report.comparison.verdict == Verdict.inconclusive and report.comparison.ties == 3
    assert report.expectations["success"] is True
    assert report.action.startswith("promoted v2")
    registry = registry_ref.open()
    assert registry.labels("capitals")["production"] == 2
    last = registry.audit_log("capitals")[-1]
    assert (last.label, last.from_version, last.to_version, last.actor) == ("production", 1, 2, "prompt-regression")
    assert wait_for_events(platform, event="llm-resilience.prompt.promoted", resource_id="llm-resilience.prompt.capitals", since=started)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_latest_artifacts(limit=100)}
    assert {"prompt-regression-capitals", "prompt-results-capitals"} <= keys

    # Run again: the candidate is production already, so nothing moves and nothing is announced.
    moves, again_started = len(registry.audit_log("capitals")), time.time()
    again = promote_prompt(PromotionRequest(
        prompt="capitals", suite_path=str(EXAMPLES / "capitals.yaml"), endpoint_block="gateway",
        registry=registry_ref, runner=RunnerPolicy(samples=2, max_concurrency=1, cache_dir=str(tmp_path / "cache")),
        thresholds=Thresholds(min_pass_rate=0.8, max_p95_latency_ms=120000)))
    assert again.action == "already in production: v2 (no change)"
    assert len(registry.audit_log("capitals")) == moves and registry.labels("capitals")["production"] == 2
    # A sentinel sent after the run through the same events client arrives after anything the run
    # emitted: once the server has it, a "promoted" from the second run would be there too.
    from prefect.events import emit_event

    sentinel = f"llm-resilience.test.{uuid.uuid4().hex[:8]}"
    emit_event(event="llm-resilience.test.sentinel", resource={"prefect.resource.id": sentinel})
    assert wait_for_events(platform, event="llm-resilience.test.sentinel", resource_id=sentinel, since=again_started)
    assert not wait_for_events(platform, event="llm-resilience.prompt.promoted", resource_id="llm-resilience.prompt.capitals",
                               since=again_started, timeout_s=0)


def test_production_regression_is_rolled_back(platform, scripted, registry_ref, echo_suite, tmp_path):
    registry = registry_ref.open()
    good = registry.create_version("echo", "Reply with {{answer}}", params={"temperature": 0}, author="test")
    registry.move_label("echo", "production", good.version, actor="test", reason="launch")
    first = prompt_regression(_scripted_request(RegressionRequest, registry_ref, echo_suite, tmp_path,
                                                watch_production=True))
    assert first.baseline is None and first.gate["passed"] and first.action == "none"
    bad = registry.create_version("echo", "[regress] Reply with {{answer}}", params={"temperature": 0}, author="test")
    registry.move_label("echo", "production", bad.version, actor="someone", reason="hotfix without tests")
    started = time.time()
    state = prompt_regression(_scripted_request(RegressionRequest, registry_ref, echo_suite, tmp_path,
                                                watch_production=True), return_state=True)
    report = state.result()
    assert server_copy(state).result() == report  # what a retried final-state proposal is handed
    assert (report.candidate, report.baseline) == (bad.version, good.version)
    assert report.comparison.verdict == Verdict.regressed
    assert report.action == f"rolled back production v{bad.version} -> v{good.version}"
    assert registry.labels("echo")["production"] == good.version
    move = registry.audit_log("echo")[-1]
    assert move.from_version == bad.version and move.to_version == good.version
    assert "automatic rollback" in move.reason and "regressed" in move.reason
    events = wait_for_events(platform, event="llm-resilience.prompt.rolled_back", resource_id="llm-resilience.prompt.echo", since=started)
    assert events and events[0]["payload"]["to_version"] == good.version
    assert wait_for_events(platform, event="llm-resilience.prompt.regressed", resource_id="llm-resilience.prompt.echo", since=started)


def test_gate_promotes_a_non_regression_and_holds_an_inconclusive_one(platform, scripted, registry_ref, echo_suite,
                                                                     tmp_path):
    registry = registry_ref.open()
    v1 = registry.create_version("echo", "Reply with {{answer}}", params={"temperature": 0})
    registry.move_label("echo", "production", v1.version, actor="test", reason="launch")
    v2 = registry.create_version("echo", "[regress-some] Reply with {{answer}}", params={"temperature": 0})
    registry.move_label("echo", "candidate", v2.version, actor="test", reason="try")
    held = promote_prompt(_scripted_request(PromotionRequest, registry_ref, echo_suite, tmp_path))
    assert held.comparison.verdict == Verdict.inconclusive and held.comparison.candidate_worse == 2
    assert held.action.startswith("not promoted") and registry.labels("echo")["production"] == v1.version

    v3 = registry.create_version("echo", "Please. Reply with {{answer}}", params={"temperature": 0})
    registry.move_label("echo", "candidate", v3.version, actor="test", reason="try again")
    promoted = promote_prompt(_scripted_request(PromotionRequest, registry_ref, echo_suite, tmp_path))
    assert promoted.comparison.verdict != Verdict.regressed and promoted.gate["passed"]
    assert registry.labels("echo")["production"] == v3.version

    # a second identical run: every answer comes from the cache, the endpoint sees nothing
    scripted.reset_counts()
    again = prompt_regression(_scripted_request(RegressionRequest, registry_ref, echo_suite, tmp_path,
                                                candidate=str(v3.version), baseline=str(v1.version)))
    assert scripted.requests == 0 and again.stats.calls == 0 and again.stats.cache_hits == 2 * 8 * 2


def test_bad_input_fails_before_any_call(platform, scripted, registry_ref, echo_suite, tmp_path):
    registry = registry_ref.open()
    registry.create_version("echo", "Reply with {{answer}} in {{language}}")
    registry.move_label("echo", "candidate", 1, actor="t", reason="r")
    registry.move_label("echo", "production", 1, actor="t", reason="r")
    scripted.reset_counts()
    with pytest.raises(SuiteError, match="language"):
        prompt_regression(_scripted_request(RegressionRequest, registry_ref, echo_suite, tmp_path))
    with pytest.raises(PromptNotFound, match="no label 'staging'"):
        prompt_regression(_scripted_request(RegressionRequest, registry_ref, echo_suite, tmp_path, candidate="staging"))
    with pytest.raises(PromptNotFound, match="'ghost' does not exist"):
        prompt_regression(_scripted_request(RegressionRequest, registry_ref, echo_suite, tmp_path).model_copy(
            update={"prompt": "ghost"}))
    assert scripted.requests == 0


def test_s3_registry_two_writers_and_cached_client(platform, registry_ref, tmp_path):
    target = StorageTarget.load("region-a")
    fs = target.filesystem()
    path = target.path(registry_ref.prefix, "race-object.json")
    wins = []
    barrier = threading.Barrier(4)

    def writer(i):
        barrier.wait()
        wins.append(create_exclusive(fs, path, f"writer {i}".encode()))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False, False, False, True]  # S3 conditional write: exactly one creator

    registry = registry_ref.open()
    registry.create_version("greet", "Hello {{name}}")
    registry.move_label("greet", "production", 1, actor="t", reason="r")
    client = PromptClient(registry, tmp_path / "prompt-cache")
    assert not client.get("greet@production").cached
    dead = StorageTarget(url=target.url, endpoint_url="http://127.0.0.1:9", access_key_id="x",
                         secret_access_key="x", region_name="us-east-1",
                         client_options={"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}})
    offline = PromptClient(PromptRegistry.from_target(dead, registry_ref.prefix), tmp_path / "prompt-cache")
    served = offline.get("greet@production")
    assert served.cached and served.version.template == "Hello {{name}}"


def test_nightly_regression_deployment_is_scheduled(deployed: PlatformSettings) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("prompt-regression/prompt-regression-nightly")
        schedules = client.read_deployment_schedules(nightly.id)
        promote = client.read_deployment_by_name("promote-prompt/promote-prompt")
    assert [s.schedule.cron for s in schedules] == ["0 2 * * *"] and all(s.active for s in schedules)
    assert nightly.parameters["request"]["watch_production"] is True
    assert nightly.work_pool_name == deployed.work_pool and promote.work_pool_name == deployed.work_pool
