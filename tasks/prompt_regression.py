"""Prefect tasks of the prompt-regression flows; the logic is in tasks.prompt_evaluation and
tasks.prompt_registry. No task caches its result: each reads or changes mutable registry state
(labels move between runs); re-runs are cheap through the response cache instead."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from blocks import LLMEndpoint, StorageTarget
from tasks.prompt_evaluation import evaluate
from tasks.prompt_gate import Thresholds
from tasks.prompt_registry import LabelMove, PromptRegistry, PromptVersion
from tasks.prompt_report import RegressionReport
from tasks.prompt_runner import EndpointConfig, PromptRunner, RunnerPolicy, SampleResult
from tasks.prompt_suite import Suite, check_variables, load_suite
from tasks.retry_policy import network_task_options
from tasks.strict_input import StrictInput


class RegistryRef(StrictInput):
    """Where the registry lives: a StorageTarget block and a prefix below its root."""

    storage_block: str = Field(default="region-a", description="StorageTarget block holding the registry.")
    prefix: str = Field(default="prompts", description="Folder below the target's root.")

    def open(self) -> PromptRegistry:
        return PromptRegistry.from_target(StorageTarget.load(self.storage_block), self.prefix)


@task(name="load-suite", cache_policy=NO_CACHE)
def load_suite_task(path: str) -> Suite:
    return load_suite(path)


@task(name="resolve-prompt-versions", cache_policy=NO_CACHE, **network_task_options(retries=2))
def resolve_versions(registry: RegistryRef, refs: list[str], suite: Suite) -> list[PromptVersion]:
    """Resolve every ref and check the suite gives all template variables: bad input fails here,
    before any model call."""
    reg = registry.open()
    versions = [reg.resolve(ref) for ref in refs]
    for v in versions:
        check_variables(suite, v.template, f"{v.ref} template")
    return versions


@task(name="run-prompt-suite", cache_policy=NO_CACHE, **network_task_options(retries=1))
def run_suite(
    suite: Suite, candidate: PromptVersion, baseline: PromptVersion | None, endpoint_block: str,
    judge_block: str | None, policy: RunnerPolicy, thresholds: Thresholds, confidence: float,
) -> tuple[RegressionReport, list[SampleResult]]:
    """All calls of the run in one task (hundreds of calls, one task run); a retry of this task
    re-asks only what the response cache does not already hold."""
    endpoint = EndpointConfig.from_block(LLMEndpoint.load(endpoint_block))
    judge = EndpointConfig.from_block(LLMEndpoint.load(judge_block)) if judge_block else None
    runner = PromptRunner(endpoint, policy, judge=judge)
    return evaluate(suite, runner, candidate=candidate, baseline=baseline, thresholds=thresholds,
                    confidence=confidence)


@task(name="record-prompt-runs", cache_policy=NO_CACHE, **network_task_options(retries=2))
def record_runs(registry: RegistryRef, name: str, outcomes: dict[int, bool], run_id: str,
                summaries: dict[int, dict[str, Any]]) -> None:
    reg = registry.open()
    for version, passed in outcomes.items():
        reg.record_run(name, version, run_id, passed, summaries.get(version, {}))


@task(name="move-prompt-label", cache_policy=NO_CACHE, **network_task_options(retries=2))
def move_label(registry: RegistryRef, name: str, label: str, version: int, actor: str, reason: str,
               expected_from: int | None | str = "any") -> LabelMove:
    return registry.open().move_label(name, label, version, actor=actor, reason=reason, expected_from=expected_from)


@task(name="prompt-rollback-target", cache_policy=NO_CACHE, **network_task_options(retries=2))
def rollback_target(registry: RegistryRef, name: str, current: int) -> int | None:
    return registry.open().rollback_target(name, current)
