"""Prompt regression: test prompt versions with a suite, promote candidates through a gate,
roll `production` back when it regresses.

    from flows.prompt_regression import prompt_regression, promote_prompt, manage_prompt, RegressionRequest
    report = prompt_regression(RegressionRequest(prompt="capitals", suite_path="examples/prompts/capitals.yaml"))

`prompt_regression` compares `candidate` with `baseline` (any labels or version numbers); with
`watch_production=True` (the nightly deployment) it tests the `production` version against the
last known good production version (the most recent earlier holder of `production` whose last
recorded run passed: `PromptRegistry.rollback_target`) and, when production regressed
significantly or breached a threshold while that version still holds the thresholds, moves
`production` back to it (`tasks.prompt_gate.rollback_decision`, not the stricter promotion gate).
`promote_prompt` moves `candidate` to `production` only when the gate passes. `manage_prompt`
creates versions and moves labels by hand.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import get_run_context
from prefect.events import emit_event
from prefect.states import Completed
from pydantic import Field, model_validator

from tasks.prompt_evaluation import baseline_holds, decide_rollback
from tasks.prompt_gate import Thresholds
from tasks.prompt_registry import LabelMove, PromptVersion
from tasks.prompt_report import RegressionReport, markdown, table_rows
from tasks.prompt_runner import RunnerPolicy
from tasks.prompt_statistics import Verdict
from tasks.prompt_regression import (
    RegistryRef,
    load_suite_task,
    move_label,
    record_runs,
    resolve_versions,
    rollback_target,
    run_suite,
)
from tasks.strict_input import StrictInput

EVENT_PREFIX = "llm-resilience.prompt"


class RegressionRequest(StrictInput):
    """What to test, where, and how strictly (every field has a form input in the UI)."""

    prompt: str = Field(default="capitals", description="Prompt name in the registry.")
    suite_path: str = Field(default="examples/prompts/capitals.yaml", description="Suite YAML file.")
    candidate: str = Field(default="candidate", min_length=1, description="Label or version number under test.")
    baseline: str | None = Field(default="production", description="Label or version to compare with.")
    watch_production: bool = Field(
        default=False,
        description="Test `production` against the last known good production version; roll back on a "
                    "regressed verdict or a threshold breach.",
    )
    endpoint_block: str = Field(default="region-a", description="LLMEndpoint block the prompts run on.")
    judge_block: str | None = Field(default=None, description="LLMEndpoint block judging llm-rubric assertions.")
    registry: RegistryRef = Field(default_factory=RegistryRef)
    runner: RunnerPolicy = Field(default_factory=lambda: RunnerPolicy(cache_dir=".state/prompt-cache"))
    thresholds: Thresholds = Field(default_factory=Thresholds)
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Confidence of the intervals and the verdict.")
    actor: str = Field(default="prompt-regression", description="Recorded as who moved a label.")


def _artifact_key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def _run_id() -> str:
    try:
        return str(get_run_context().flow_run.id)
    except Exception:  # noqa: BLE001 - outside a flow run context
        return "local"


def _publish(report: RegressionReport) -> None:
    create_markdown_artifact(key=_artifact_key("prompt-regression", report.prompt), markdown=markdown(report),
                             description=f"{report.prompt}: {report.comparison.verdict.value if report.comparison else 'no baseline'}")
    create_table_artifact(key=_artifact_key("prompt-results", report.prompt), table=table_rows(report),
                          description=f"Per case and version pass rates of {report.prompt} on {report.suite}")


def _emit(what: str, report: RegressionReport, extra: dict[str, Any] | None = None) -> None:
    emit_event(
        event=f"{EVENT_PREFIX}.{what}",
        resource={"prefect.resource.id": f"llm-resilience.prompt.{report.prompt}",
                  "prefect.resource.name": report.prompt},
        payload={"candidate": report.candidate, "baseline": report.baseline,
                 "verdict": report.comparison.verdict.value if report.comparison else None,
                 "p_value": report.comparison.p_value if report.comparison else None,
                 "gate": report.gate, **(extra or {})},
    )


def _gate_passed(report: RegressionReport) -> bool:
    return bool(report.gate and report.gate["passed"]) and bool(not report.expectations or report.expectations["success"])


def _evaluate(request: RegressionRequest, candidate_ref: str, baseline_ref: str | None) -> RegressionReport:
    suite = load_suite_task(request.suite_path)
    refs = [candidate_ref] + ([baseline_ref] if baseline_ref else [])
    versions: list[PromptVersion] = resolve_versions(request.registry, refs, suite)
    candidate, baseline = versions[0], (versions[1] if baseline_ref else None)
    report, _ = run_suite(suite, candidate, baseline, request.endpoint_block, request.judge_block, request.runner,
                          request.thresholds, request.confidence)
    return report


def _outcome(report: RegressionReport) -> str:
    """The decision that applied: the rollback decision in watch mode, else the promotion gate."""
    if report.rollback is not None:
        return f"production {'failed' if report.rollback['production_failed'] else 'holds'}"
    return f"gate {'pass' if _gate_passed(report) else 'fail'}"


def _finish(report: RegressionReport):  # noqa: ANN202 - a Prefect state carrying the report
    verdict = report.comparison.verdict.value if report.comparison else "no-baseline"
    _publish(report)
    get_run_logger().info("prompt %s: verdict %s, %s, action %s", report.prompt, verdict, _outcome(report),
                          report.action)
    return Completed(message=f"verdict {verdict}; {_outcome(report)}; {report.action}", data=report)


# persist_result: the report rides in the returned state (see verify-checkpoint for why).
@flow(name="prompt-regression", log_prints=True, persist_result=True)
def prompt_regression(request: RegressionRequest | None = None) -> RegressionReport:
    request = request or RegressionRequest()
    run_id = _run_id()
    if not request.watch_production:
        report = _evaluate(request, f"{request.prompt}@{request.candidate}",
                           f"{request.prompt}@{request.baseline}" if request.baseline else None)
        record_runs(request.registry, request.prompt, {report.candidate: _gate_passed(report)}, run_id,
                    {report.candidate: report.version(report.candidate).model_dump(exclude={"cases"})})
        if report.comparison and report.comparison.verdict == Verdict.regressed:
            _emit("regressed", report)
        return _finish(report)

    production = resolve_versions(request.registry, [f"{request.prompt}@production"], load_suite_task(request.suite_path))[0]
    good = rollback_target(request.registry, request.prompt, production.version)
    report = _evaluate(request, f"{request.prompt}@production", f"{request.prompt}@{good}" if good else None)
    decision = decide_rollback(report, request.thresholds)
    report.rollback = decision.model_dump()
    # production's record says whether it is still known good (a later rollback target), so an
    # inconclusive dip does not disqualify it; the promotion gate's verdict is not recorded here
    outcomes = {report.candidate: not decision.production_failed}
    if report.baseline is not None:
        outcomes[report.baseline] = baseline_holds(report, request.thresholds)
    record_runs(request.registry, request.prompt, outcomes, run_id,
                {v.version: v.model_dump(exclude={"cases"}) for v in report.versions})
    if decision.production_failed:
        _emit("regressed", report, {"rollback": report.rollback})
    if decision.rollback:
        move: LabelMove = move_label(
            request.registry, request.prompt, "production", decision.target, request.actor,
            f"automatic rollback by run {run_id}: v{report.candidate} failed in production "
            f"({'; '.join(decision.reasons)})",
            expected_from=report.candidate,
        )
        report.action = f"rolled back production v{move.from_version} -> v{move.to_version}"
        _emit("rolled_back", report, {"from_version": move.from_version, "to_version": move.to_version,
                                      "reason": move.reason})
    elif decision.production_failed:
        report.action = f"production v{report.candidate} failed; no rollback: {decision.blocked}"
    return _finish(report)


class PromotionRequest(RegressionRequest):
    watch_production: bool = Field(default=False, description="Unused by promote_prompt.")


@flow(name="promote-prompt", log_prints=True, persist_result=True)  # the report rides in the state
def promote_prompt(request: PromotionRequest | None = None) -> RegressionReport:
    """Move `candidate` to `production` when the verdict is not `regressed` and thresholds hold."""
    request = request or PromotionRequest()
    report = _evaluate(request, f"{request.prompt}@{request.candidate}",
                       f"{request.prompt}@{request.baseline}" if request.baseline else None)
    passed = _gate_passed(report)
    run_id = _run_id()
    record_runs(request.registry, request.prompt, {report.candidate: passed}, run_id,
                {report.candidate: report.version(report.candidate).model_dump(exclude={"cases"})})
    in_production = request.registry.open().labels(request.prompt).get("production")
    if passed and in_production == report.candidate:
        # a re-run after the promotion: nothing moves, and no `promoted` event claims it did
        report.action = f"already in production: v{report.candidate} (no change)"
    elif passed:
        verdict = report.comparison.verdict.value if report.comparison else "no baseline"
        move = move_label(request.registry, request.prompt, "production", report.candidate, request.actor,
                          f"promoted by run {run_id}: verdict {verdict}, gate passed",
                          expected_from=report.baseline if request.baseline == "production" else "any")
        report.action = f"promoted v{move.to_version} to production (was v{move.from_version})"
        _emit("promoted", report)
    else:
        report.action = "not promoted: " + "; ".join(report.gate["reasons"] if not report.gate["passed"]
                                                     else report.expectations["failures"])
        if report.comparison and report.comparison.verdict == Verdict.regressed:
            _emit("regressed", report)
    return _finish(report)


class PromptChange(StrictInput):
    """Create a version and/or move a label, by hand."""

    prompt: str = Field(description="Prompt name.")
    action: Literal["create-version", "move-label"] = "create-version"
    template: str | None = Field(default=None, description="User message template with {{variables}}.")
    system: str | None = Field(default=None, description="Optional system message template.")
    params: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0, "max_tokens": 16})
    message: str = Field(default="", description="Why this version / this move.")
    label: str | None = Field(default=None, description="Label to point at the version (e.g. candidate).")
    version: int | None = Field(default=None, ge=1, description="Version to move the label to (move-label).")
    author: str = Field(default="prefect-ui")
    registry: RegistryRef = Field(default_factory=RegistryRef)

    @model_validator(mode="after")
    def _does_what_it_says(self) -> PromptChange:
        """Refused before the registry is touched: each of these ran and changed nothing, silently."""
        if not self.prompt.strip():
            raise ValueError("prompt: a prompt name is required")
        if self.action == "move-label" and (not self.label or self.version is None):
            raise ValueError("action move-label needs both `label` and `version`")
        if self.label is not None and not self.label.strip():
            raise ValueError("label: empty; give a label name or leave it out")
        return self


@flow(name="manage-prompt", log_prints=True)
def manage_prompt(change: PromptChange) -> dict[str, Any]:
    reg = change.registry.open()
    out: dict[str, Any] = {}
    version = change.version
    if change.action == "create-version":
        if not change.template:
            from tasks.errors import ConfigurationError

            raise ConfigurationError("manage-prompt: action create-version needs `template`")
        created = reg.create_version(change.prompt, change.template, system=change.system, params=change.params,
                                     author=change.author, message=change.message)
        out["version"] = created.model_dump(mode="json")
        version = created.version
    if change.label:
        if version is None:
            from tasks.errors import ConfigurationError

            raise ConfigurationError("manage-prompt: moving a label needs `version`")
        if reg.labels(change.prompt).get(change.label) != version:
            out["move"] = reg.move_label(change.prompt, change.label, version, actor=change.author,
                                         reason=change.message or "manual").model_dump(mode="json")
    out["labels"] = reg.labels(change.prompt)
    return out


if __name__ == "__main__":
    print(prompt_regression().model_dump_json(indent=2))
