"""Evaluate a suite's assertions against one model answer.

Pure functions for every type except `llm-rubric`, which asks a judge (any OpenAI-compatible
endpoint) through a callable the runner supplies, and `similar`, which embeds with
all-MiniLM-L6-v2 (tasks.sentence_embedding). Negation flips the outcome; weights count in the
case score.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from tasks.prompt_suite import Assertion, Case, SuiteError

Judge = Callable[[str, str], Awaitable[tuple[bool, str]]]
Similarity = Callable[[str, str], float]

JUDGE_PROMPT = (
    "You grade an answer against a rubric. Reply with exactly one word, PASS or FAIL.\n\n"
    "Rubric: {rubric}\n\nAnswer: {output}\n\nGrade:"
)


class JudgeFailed(Exception):
    """The judge gave no verdict (its call failed, or it did not answer PASS/FAIL): the sample is an
    error, like a failed model call, never an assertion outcome (a negated rubric must not pass)."""


class AssertionResult(BaseModel):
    assertion: str
    passed: bool
    weight: float
    detail: str = ""


class CaseScore(BaseModel):
    passed: bool
    score: float
    results: list[AssertionResult]


def _json_value(output: str) -> tuple[Any, str | None]:
    try:
        return json.loads(output), None
    except (ValueError, TypeError) as exc:
        return None, f"not JSON: {exc}"


def _schema_errors(value: Any, schema: dict[str, Any]) -> str | None:
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path))
    return errors[0].message if errors else None


def check_plain(a: Assertion, output: str, latency_ms: float, similarity: Similarity | None = None) -> tuple[bool, str]:
    """Outcome (before negation) of every type that needs no network call."""
    t = a.type
    if t == "equals":
        expected = a.value if isinstance(a.value, str) else json.dumps(a.value)
        return output.strip() == expected.strip(), ""
    if t == "contains":
        return str(a.value) in output, ""
    if t == "icontains":
        return str(a.value).lower() in output.lower(), ""
    if t == "starts-with":
        return output.lstrip().startswith(str(a.value)), ""
    if t == "regex":
        return re.search(str(a.value), output) is not None, ""
    if t in {"is-json", "json-schema"}:
        value, err = _json_value(output)
        if err:
            return False, err
        if isinstance(a.value, dict):
            schema_err = _schema_errors(value, a.value)
            return schema_err is None, schema_err or ""
        return True, ""
    if t == "length":
        n = len(output)
        ok = (a.min is None or n >= a.min) and (a.max is None or n <= a.max)
        return ok, f"{n} chars"
    if t == "latency":
        return latency_ms <= float(a.threshold or 0), f"{latency_ms:.0f} ms"
    if t == "similar":
        if similarity is None:
            from tasks.sentence_embedding import default_encoder

            similarity = default_encoder().similarity
        score = similarity(output, str(a.value))
        threshold = a.threshold if a.threshold is not None else 0.75
        return score >= threshold, f"cosine {score:.3f} (threshold {threshold})"
    raise ValueError(f"assertion type {t!r} needs a network call or is unknown")


async def score_case(
    case: Case,
    output: str,
    latency_ms: float,
    *,
    judge: Judge | None = None,
    similarity: Similarity | None = None,
) -> CaseScore:
    """Every assertion of the case on one answer; pass = weighted score >= case threshold
    (default: every assertion passes, promptfoo's rule when no threshold is set).

    Raises JudgeFailed when the judge gives no verdict, SuiteError for a rubric without a judge
    (the runner refuses such a suite before any call: tasks.prompt_suite.check_judge)."""
    results = []
    for a in case.assertions:
        if a.type == "llm-rubric":
            if judge is None:
                raise SuiteError(f"case {case.id!r}: {a.describe()} needs a judge endpoint and none is configured")
            ok, detail = await judge(str(a.value), output)
        else:
            ok, detail = check_plain(a, output, latency_ms, similarity)
        results.append(AssertionResult(assertion=a.describe(), passed=ok != a.negate, weight=a.weight, detail=detail))
    total = sum(r.weight for r in results)
    score = sum(r.weight for r in results if r.passed) / total if total else 1.0
    if case.threshold is None:
        passed = all(r.passed for r in results if r.weight > 0) if total else True
    else:
        passed = score >= case.threshold
    return CaseScore(passed=passed, score=score, results=results)


def parse_judge_reply(reply: str) -> tuple[bool, str]:
    """PASS/FAIL from a judge's reply; anything else is no verdict (JudgeFailed, saying what came
    back), since scoring it as a fail would make a negated rubric pass."""
    words = re.findall(r"[A-Za-z]+", reply.upper())
    if words and words[0] in {"PASS", "YES"}:
        return True, "judge: PASS"
    if words and words[0] in {"FAIL", "NO"}:
        return False, "judge: FAIL"
    raise JudgeFailed(f"judge reply not PASS/FAIL: {reply[:60]!r}")
