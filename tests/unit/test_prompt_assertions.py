"""Every assertion type, negation and weights, on fixed answers."""

import asyncio

import pytest

from tasks.prompt_assertions import JudgeFailed, check_plain, parse_judge_reply, score_case
from tasks.prompt_suite import Assertion, Case, SuiteError, parse_suite


def ok(kind, output, latency_ms=10.0, similarity=None, **kw):
    passed, _ = check_plain(Assertion(type=kind, **kw), output, latency_ms, similarity)
    return passed


def test_equals_contains_icontains_starts_with():
    assert ok("equals", " Paris \n", value="Paris")
    assert not ok("equals", "Paris.", value="Paris")
    assert ok("equals", '{"a": 1}', value={"a": 1})
    assert ok("contains", "It is Paris.", value="Paris") and not ok("contains", "paris", value="Paris")
    assert ok("icontains", "PARIS", value="paris") and not ok("icontains", "Rome", value="paris")
    assert ok("starts-with", "  Yes, sure", value="Yes") and not ok("starts-with", "No", value="Yes")


def test_regex():
    assert ok("regex", "answer: 42", value=r"\b\d+\b")
    assert not ok("regex", "answer: none", value=r"\b\d+\b")


def test_is_json_and_schema():
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    assert ok("is-json", '{"x": 1}') and not ok("is-json", "{x: 1}")
    assert ok("is-json", '{"city": "Paris"}', value=schema)
    assert not ok("is-json", '{"city": 3}', value=schema)
    assert ok("json-schema", '{"city": "Rome"}', value=schema)
    passed, detail = check_plain(Assertion(type="json-schema", value=schema), "{}", 1.0)
    assert not passed and "city" in detail


def test_length_and_latency():
    assert ok("length", "abcde", min=3, max=5) and not ok("length", "abcdef", max=5) and not ok("length", "ab", min=3)
    assert ok("latency", "x", latency_ms=499, threshold=500) and not ok("latency", "x", latency_ms=501, threshold=500)


def test_similar_uses_threshold():
    fake = lambda a, b: 0.8  # noqa: E731 - the real encoder is tested in test_sentence_embedding
    assert ok("similar", "a", similarity=fake, value="b", threshold=0.75)
    assert not ok("similar", "a", similarity=fake, value="b", threshold=0.9)


def test_negation_weights_and_case_threshold():
    suite = parse_suite({"name": "s", "cases": [
        {"id": "c", "assert": [{"type": "not-contains", "value": "London"},
                               {"type": "icontains", "value": "paris", "weight": 3},
                               {"type": "equals", "value": "nope", "weight": 1}],
         "threshold": 0.75}]})
    case = suite.cases[0]
    assert case.assertions[0].negate and case.assertions[0].type == "contains"
    scored = asyncio.run(score_case(case, "Paris", 5.0))
    assert scored.score == pytest.approx(4 / 5) and scored.passed  # 0.8 >= 0.75
    scored = asyncio.run(score_case(case, "London, not Paris", 5.0))
    assert scored.score == pytest.approx(3 / 5) and not scored.passed
    strict = Case(id="s", **{"assert": [Assertion(type="contains", value="a"),
                                                       Assertion(type="contains", value="b", negate=True)]})
    assert asyncio.run(score_case(strict, "a", 1.0)).passed
    assert not asyncio.run(score_case(strict, "ab", 1.0)).passed  # no threshold: every assertion must pass


def test_llm_rubric_asks_the_judge():
    case = parse_suite({"name": "s", "cases": [{"id": "c", "assert": [{"type": "llm-rubric", "value": "polite"}]}]}).cases[0]
    seen = []

    async def judge(rubric, answer):
        seen.append((rubric, answer))
        return parse_judge_reply("PASS.")

    assert asyncio.run(score_case(case, "Thank you", 1.0, judge=judge)).passed
    assert seen == [("polite", "Thank you")]
    assert parse_judge_reply("fail") == (False, "judge: FAIL")
    with pytest.raises(JudgeFailed, match="not PASS/FAIL: 'maybe'"):  # no verdict, not a fail
        parse_judge_reply("maybe")


def test_rubric_without_a_verdict_is_never_scored_even_negated():
    suite = parse_suite({"name": "s", "cases": [{"id": "c", "assert": [{"type": "not-llm-rubric", "value": "rude"}]}]})
    case = suite.cases[0]
    with pytest.raises(SuiteError, match="case 'c': not-llm-rubric 'rude' needs a judge"):
        asyncio.run(score_case(case, "anything", 1.0))  # no judge: refused, not passed by default

    async def down(rubric, answer):
        raise JudgeFailed("judge call failed: HTTP 503")

    with pytest.raises(JudgeFailed, match="HTTP 503"):
        asyncio.run(score_case(case, "anything", 1.0, judge=down))


@pytest.mark.parametrize(
    ("assertion", "message"),
    [
        ({"type": "is-palindrome"}, "unknown assertion type 'is-palindrome'"),
        ({"type": "regex", "value": "([a-z"}, "does not compile"),
        ({"type": "contains"}, "needs a `value`"),
        ({"type": "length"}, "needs `min` and/or `max`"),
        ({"type": "latency"}, "positive `threshold`"),
        ({"type": "json-schema", "value": {"type": "nonsense"}}, "invalid JSON schema"),
    ],
)
def test_bad_assertions_are_specific_errors(assertion, message):
    with pytest.raises(SuiteError, match=message) as info:
        parse_suite({"name": "s", "cases": [{"id": "the-case", "assert": [assertion]}]}, "suite.yaml")
    assert "suite.yaml" in str(info.value) and "the-case" in str(info.value)
