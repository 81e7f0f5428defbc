"""The runner against the scripted OpenAI-compatible endpoint (a real local HTTP server):
cache, samples, 429 bursts, retries, timeouts, and a full evaluation with its verdict."""

import asyncio
import json

import fsspec
import httpx
import pytest

from tasks.prompt_evaluation import decide_rollback, evaluate
from tasks.prompt_gate import Thresholds
from tasks.prompt_registry import PromptRegistry
from tasks.prompt_report import markdown, summarise, table_rows
from tasks.prompt_runner import EndpointConfig, PromptRunner, RunnerPolicy
from tasks.prompt_statistics import Verdict
from tasks.prompt_suite import SuiteError, parse_suite
from tests.scripted_llm import ScriptedLLM

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
SUITE = parse_suite({"name": "echo", "cases": [
    {"id": w, "vars": {"answer": w}, "assert": [{"type": "equals", "value": w}]} for w in WORDS]})


@pytest.fixture
def registry(tmp_path):
    reg = PromptRegistry(fsspec.filesystem("file"), str(tmp_path / "prompts"))
    reg.create_version("echo", "Reply with {{answer}}", params={"temperature": 0, "max_tokens": 8})
    reg.create_version("echo", "[regress] Reply with {{answer}}", params={"temperature": 0, "max_tokens": 8})
    reg.create_version("echo", "[regress-some] Reply with {{answer}}", params={"temperature": 0, "max_tokens": 8})
    return reg


SCRIPT = {"rules": [
    {"match": ["[regress]"], "reply": "wrong"},
    {"match": ["[regress-some]", "alpha"], "reply": "wrong"},
    {"match": ["[regress-some]", "bravo"], "reply": "wrong"},
]}


def runner_for(server, **policy):
    policy = {"samples": 2, "max_concurrency": 4, "backoff_base_s": 0.01, **policy}
    return PromptRunner(EndpointConfig(base_url=server.base_url, model="scripted", read_timeout_s=5),
                        RunnerPolicy(**policy))


def test_all_cases_pass_and_n_samples_are_n_calls(registry):
    with ScriptedLLM(SCRIPT) as server:
        runner = runner_for(server, samples=3)
        results = asyncio.run(runner.run(SUITE, [registry.get_version("echo", 1)]))
    assert len(results) == 8 * 3 and all(r.passed for r in results)
    assert server.requests == 24 and runner.stats.calls == 24
    (summary,) = summarise(results)
    assert summary.pass_rate == 1.0 and summary.error_rate == 0.0 and not summary.flaky_cases
    assert summary.p95_latency_ms is not None


def test_second_run_with_nothing_changed_makes_no_calls(registry, tmp_path):
    version = registry.get_version("echo", 1)
    with ScriptedLLM(SCRIPT) as server:
        first = runner_for(server, cache_dir=str(tmp_path / "cache"))
        asyncio.run(first.run(SUITE, [version]))
        assert server.requests == 16 and first.stats.cache_hits == 0
        server.reset_counts()
        second = runner_for(server, cache_dir=str(tmp_path / "cache"))
        results = asyncio.run(second.run(SUITE, [version]))
        assert server.requests == 0 and second.stats.calls == 0 and second.stats.cache_hits == 16
        assert all(r.cached and r.passed for r in results)
        # one more sample: only the new sample index is called
        third = runner_for(server, cache_dir=str(tmp_path / "cache"), samples=3)
        asyncio.run(third.run(SUITE, [version]))
        assert server.requests == 8


def test_429_bursts_slow_the_runner_but_fail_nothing(registry):
    script = {**SCRIPT, "burst_429": {"every": 12, "length": 5}}
    with ScriptedLLM(script) as server:
        runner = runner_for(server, samples=3, max_concurrency=8, max_retries=8)
        results = asyncio.run(runner.run(SUITE, [registry.get_version("echo", 1)]))
    assert all(r.passed for r in results) and not any(r.error for r in results)
    assert runner.stats.throttled > 0 and server.by_status[429] == runner.stats.throttled
    assert runner.stats.min_concurrency < 8  # halved on 429
    assert runner.stats.retries >= runner.stats.throttled


def test_5xx_is_retried_and_timeouts_are_errors_not_failures(registry):
    script = {"rules": [{"match": ["alpha"], "status": 503, "times": 1},
                        {"match": ["charlie"], "status": 502, "times": 9},
                        {"match": ["bravo"], "reply": "bravo", "delay_s": 1.5}]}
    with ScriptedLLM(script) as server:
        runner = PromptRunner(EndpointConfig(base_url=server.base_url, model="scripted", read_timeout_s=0.4),
                              RunnerPolicy(samples=1, max_retries=1, backoff_base_s=0.01))
        results = asyncio.run(runner.run(SUITE, [registry.get_version("echo", 1)]))
    by_case = {r.case_id: r for r in results}
    assert by_case["alpha"].passed is True  # one 503, retried, answered
    assert by_case["bravo"].passed is None and "Timeout" in by_case["bravo"].error
    assert by_case["charlie"].passed is None and "HTTP 502" in by_case["charlie"].error  # retries exhausted
    (summary,) = summarise(results)
    assert summary.errors == 2 and summary.error_rate == pytest.approx(2 / 8)
    assert summary.pass_rate == 1.0  # the error is not an assertion failure


def test_regression_is_detected_with_its_verdict(registry):
    with ScriptedLLM(SCRIPT) as server:
        report, results = evaluate(SUITE, runner_for(server), candidate=registry.get_version("echo", 2),
                                   baseline=registry.get_version("echo", 1), thresholds=Thresholds())
    assert report.comparison.verdict == Verdict.regressed
    assert report.comparison.candidate_worse == 8
    assert not report.gate["passed"] and any("regressed" in r for r in report.gate["reasons"])
    assert report.expectations["success"] is False
    assert any("expect_column_mean_to_be_between" in f for f in report.expectations["failures"])
    md = markdown(report)
    assert "Verdict: regressed" in md and "| alpha |" in md and "v1 (baseline)" in md
    assert len(table_rows(report)) == 16


def test_small_regression_is_inconclusive_and_fails_the_gate(registry):
    with ScriptedLLM(SCRIPT) as server:
        report, _ = evaluate(SUITE, runner_for(server), candidate=registry.get_version("echo", 3),
                             baseline=registry.get_version("echo", 1), thresholds=Thresholds(min_pass_rate=0.7))
    assert report.comparison.verdict == Verdict.inconclusive
    assert report.version(3).pass_rate == pytest.approx(0.75)
    assert not report.gate["passed"] and "inconclusive" in " ".join(report.gate["reasons"])


def test_nightly_keeps_production_on_an_inconclusive_dip_and_rolls_back_a_regression(registry):
    with ScriptedLLM(SCRIPT) as server:
        dip, _ = evaluate(SUITE, runner_for(server), candidate=registry.get_version("echo", 3),
                          baseline=registry.get_version("echo", 1), thresholds=Thresholds(min_pass_rate=0.7))
        regressed, _ = evaluate(SUITE, runner_for(server), candidate=registry.get_version("echo", 2),
                                baseline=registry.get_version("echo", 1), thresholds=Thresholds(min_pass_rate=0.0))
    assert dip.comparison.verdict == Verdict.inconclusive and not dip.gate["passed"]  # held as a candidate
    keep = decide_rollback(dip, Thresholds(min_pass_rate=0.7))
    assert not keep.production_failed and not keep.rollback  # but not rolled back as production
    back = decide_rollback(regressed, Thresholds(min_pass_rate=0.0))
    assert back.rollback and back.target == 1 and "verdict regressed" in back.reasons[0]


def test_equal_versions_pass_the_gate_with_expectations(registry):
    with ScriptedLLM(SCRIPT) as server:
        v4 = registry.create_version("echo", "Please. Reply with {{answer}}", params={"temperature": 0})
        report, _ = evaluate(SUITE, runner_for(server), candidate=v4, baseline=registry.get_version("echo", 1),
                             thresholds=Thresholds())
    assert report.comparison.verdict == Verdict.inconclusive and report.comparison.ties == 8
    assert report.gate["passed"] and report.expectations["success"]


def test_missing_variable_fails_before_any_call(registry):
    suite = parse_suite({"name": "s", "cases": [{"id": "a", "vars": {"other": 1}, "assert": [{"type": "contains", "value": "x"}]}]})
    with ScriptedLLM(SCRIPT) as server:
        with pytest.raises(SuiteError, match="template variable"):
            asyncio.run(runner_for(server).run(suite, [registry.get_version("echo", 1)]))
    assert server.requests == 0


def test_promptfoo_example_imports_and_runs(tmp_path):
    from pathlib import Path

    from tasks.promptfoo_import import import_promptfoo

    imported = import_promptfoo(Path(__file__).resolve().parents[2] / "examples" / "prompts" / "promptfooconfig.yaml")
    reg = PromptRegistry(fsspec.filesystem("file"), str(tmp_path / "prompts"))
    provider = imported.providers[0]
    versions = [reg.create_version("imported", p.template, params=provider.params, message=p.label)
                for p in imported.prompts]
    assert [v.version for v in versions] == [1, 2]
    with ScriptedLLM() as server:
        runner = PromptRunner(EndpointConfig(base_url=server.base_url, model=provider.model),
                              RunnerPolicy(samples=1, backoff_base_s=0.01))
        results = asyncio.run(runner.run(imported.suite, versions))
    assert len(results) == 6 and all(r.passed for r in results), [(r.case_id, r.output) for r in results]
    assert sum(p.startswith("Please.") for p in server.prompts) == 3


def test_llm_rubric_is_judged_by_an_llm_endpoint(registry):
    suite = parse_suite({"name": "judged", "cases": [
        {"id": w, "vars": {"answer": w}, "assert": [{"type": "llm-rubric", "value": "names the first letter"}]}
        for w in ("alpha", "bravo")]})
    judge_script = {"rules": [{"match": ["Rubric: names the first letter", "Answer: alpha"], "reply": "PASS"},
                              {"match": ["Rubric:"], "reply": "FAIL"}]}
    with ScriptedLLM() as answers, ScriptedLLM(judge_script) as judge:
        runner = PromptRunner(EndpointConfig(base_url=answers.base_url, model="scripted"),
                              RunnerPolicy(samples=1, backoff_base_s=0.01),
                              judge=EndpointConfig(base_url=judge.base_url, model="judge"))
        results = asyncio.run(runner.run(suite, [registry.get_version("echo", 1)]))
    assert {r.case_id: r.passed for r in results} == {"alpha": True, "bravo": False}
    assert judge.requests == 2 and answers.requests == 2
    assert any("judge: FAIL" in d for r in results for d in r.details)


JUDGED = {"name": "judged", "cases": [
    {"id": "polite", "vars": {"answer": "thanks"}, "assert": [{"type": "not-llm-rubric", "value": "rude"}]},
    {"id": "plain", "vars": {"answer": "alpha"}, "assert": [{"type": "equals", "value": "alpha"}]}]}


def test_rubric_suite_without_a_judge_is_refused_before_any_call(registry):
    suite = parse_suite(JUDGED, "suites/judged.yaml")
    with ScriptedLLM() as server:
        with pytest.raises(SuiteError, match="needs a judge") as info:
            asyncio.run(runner_for(server).run(suite, [registry.get_version("echo", 1)]))
    assert "suites/judged.yaml" in str(info.value) and "case 'polite' assert[0] (not-llm-rubric 'rude')" in str(info.value)
    assert server.requests == 0


def test_judge_without_a_verdict_is_an_error_not_an_assertion_outcome(registry):
    suite = parse_suite({"name": "judged", "cases": [
        {"id": w, "vars": {"answer": w}, "assert": [{"type": kind, "value": rubric}]}
        for w, kind, rubric in [("alpha", "llm-rubric", "down"), ("bravo", "not-llm-rubric", "down"),
                                ("charlie", "not-llm-rubric", "garbled"), ("delta", "llm-rubric", "fine")]]})
    judge_script = {"rules": [{"match": ["Rubric: down"], "status": 503},
                              {"match": ["Rubric: garbled"], "reply": "maybe"},
                              {"match": ["Rubric: fine"], "reply": "PASS"}]}
    with ScriptedLLM() as answers, ScriptedLLM(judge_script) as judge:
        runner = PromptRunner(EndpointConfig(base_url=answers.base_url, model="scripted"),
                              RunnerPolicy(samples=1, max_retries=1, backoff_base_s=0.01),
                              judge=EndpointConfig(base_url=judge.base_url, model="judge"))
        results = asyncio.run(runner.run(suite, [registry.get_version("echo", 1)]))
    by_case = {r.case_id: r for r in results}
    for case_id in ("alpha", "bravo"):  # a failed judge call: neither a fail nor (negated) a pass
        assert by_case[case_id].passed is None
        assert by_case[case_id].error.startswith(f"judge call failed for case '{case_id}'")
        assert "HTTP 503" in by_case[case_id].error
    assert by_case["charlie"].passed is None and "not PASS/FAIL: 'maybe'" in by_case["charlie"].error
    assert by_case["delta"].passed is True
    (summary,) = summarise(results)
    assert summary.errors == 3 and summary.pass_rate == 1.0


@pytest.fixture
def choiceless_endpoint(monkeypatch):
    """Every client the runner opens answers through this handler: 200 without `choices` for
    case alpha (as some proxies answer an overloaded model), a normal completion otherwise."""
    def handle(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][-1]["content"]
        if text.endswith("alpha"):
            return httpx.Response(200, json={"error": {"message": "model overloaded"}})
        reply = text.rsplit("Reply with ", 1)[1]
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": reply}}]})

    real = httpx.AsyncClient
    monkeypatch.setattr(httpx, "AsyncClient", lambda *a, **kw: real(*a, transport=httpx.MockTransport(handle), **kw))


def test_200_without_choices_is_an_error_of_that_case(registry, choiceless_endpoint):
    runner = PromptRunner(EndpointConfig(base_url="http://127.0.0.1:9/v1", model="m"),
                          RunnerPolicy(samples=2, backoff_base_s=0.01))
    results = asyncio.run(runner.run(SUITE, [registry.get_version("echo", 1)]))
    alpha = [r for r in results if r.case_id == "alpha"]
    assert all(r.passed is None for r in alpha)
    assert alpha[0].error.startswith("http://127.0.0.1:9/v1/chat/completions answered HTTP 200 without `choices")
    assert "for case 'alpha' (echo@1)" in alpha[0].error and "model overloaded" in alpha[0].error
    assert all(r.passed for r in results if r.case_id != "alpha")
    (summary,) = summarise(results)
    assert summary.errors == 2 and summary.pass_rate == 1.0
