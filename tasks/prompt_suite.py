"""Test suites for prompts: YAML cases with variables and assertions, checked before any call.

    name: capitals
    defaults:               # merged into every case
      vars: {style: short}
      assert:
        - {type: latency, threshold: 20000}
    cases:
      - id: france
        vars: {country: France}
        assert:
          - {type: icontains, value: paris}
          - {type: not-contains, value: London, weight: 2}
        threshold: 1.0      # weighted score needed to pass (default: every assertion passes)

Assertion types: equals, contains, icontains, regex, starts-with, is-json (optional JSON schema
in `value`), json-schema, length (`min`/`max`), latency (`threshold` ms), similar (`value`,
`threshold` cosine, default 0.75), llm-rubric (`value` is the rubric; the judge is an
LLMEndpoint). Prefix any type with `not-` (or set `negate: true`) to negate it; `weight` weighs
it in the case score.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import ConfigurationError

ASSERTION_TYPES = frozenset(
    {"equals", "contains", "icontains", "regex", "starts-with", "is-json", "json-schema", "length",
     "latency", "similar", "llm-rubric"}
)
TEMPLATE_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class SuiteError(ConfigurationError):
    """The suite is wrong; the message names the file, the case and the field."""


class Assertion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    value: Any = None
    threshold: float | None = None
    min: int | None = None
    max: int | None = None
    weight: float = Field(default=1.0, ge=0)
    negate: bool = False

    def describe(self) -> str:
        prefix = "not-" if self.negate else ""
        shown = "" if self.value is None else f" {str(self.value)[:40]!r}"
        return f"{prefix}{self.type}{shown}"


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    vars: dict[str, Any] = Field(default_factory=dict)
    assertions: list[Assertion] = Field(default_factory=list, alias="assert")
    threshold: float | None = Field(default=None, ge=0, le=1)
    description: str = ""


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    description: str = ""
    cases: list[Case]
    source: str = Field(default="<memory>", exclude=True)


def _normalise_assertion(raw: dict[str, Any], where: str) -> dict[str, Any]:
    raw = dict(raw)
    kind = str(raw.get("type", ""))
    if kind.startswith("not-"):
        raw["type"] = kind[4:]
        raw["negate"] = not raw.get("negate", False)
    if raw.get("type") not in ASSERTION_TYPES:
        raise SuiteError(f"{where}: unknown assertion type {kind!r} (known: {', '.join(sorted(ASSERTION_TYPES))})")
    return raw


def _only_keys(data: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SuiteError(f"{where}: must be a mapping, not {type(value).__name__}")
    return value


def _assert_list(value: Any, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
        raise SuiteError(f"{where}: must be a list of assertions (mappings with a `type`)")
    return value


def parse_suite(data: Any, source: str = "<memory>") -> Suite:
    """Validate a suite mapping (as loaded from YAML); every error names source, case and field."""
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a suite is a mapping with `name` and `cases`")
    _only_keys(data, {"name", "description", "defaults", "cases"}, source)
    defaults = _mapping(data.get("defaults"), f"{source}: defaults")
    _only_keys(defaults, {"vars", "assert"}, f"{source}: defaults")
    default_vars = _mapping(defaults.get("vars"), f"{source}: defaults.vars")
    default_asserts = _assert_list(defaults.get("assert"), f"{source}: defaults.assert")
    cases_raw = data.get("cases")
    if not isinstance(cases_raw, list) or not cases_raw:
        raise SuiteError(f"{source}: `cases` must be a non-empty list")
    cases = []
    seen: set[str] = set()
    for i, raw in enumerate(cases_raw):
        if not isinstance(raw, dict):
            raise SuiteError(f"{source}: cases[{i}] is not a mapping")
        case_id = str(raw.get("id") or f"case-{i + 1}")
        where = f"{source}: case {case_id!r}"
        if case_id in seen:
            raise SuiteError(f"{where}: duplicate case id")
        seen.add(case_id)
        merged = {**raw, "id": case_id, "vars": {**default_vars, **_mapping(raw.get("vars"), f"{where}: vars")}}
        asserts = [*default_asserts, *_assert_list(raw.get("assert"), f"{where}: assert")]
        if not asserts:  # it would score 1.0 and pass the gate having tested nothing
            raise SuiteError(f"{where}: no assertions (give the case an `assert` list, or the suite `defaults.assert`)")
        merged["assert"] = [_normalise_assertion(a, f"{where} assert[{j}]") for j, a in enumerate(asserts)]
        try:
            case = Case.model_validate(merged)
        except ValidationError as exc:
            raise SuiteError(f"{where}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
        for j, assertion in enumerate(case.assertions):
            check_assertion(assertion, f"{where} assert[{j}] ({assertion.type})")
        cases.append(case)
    return Suite(name=str(data.get("name") or Path(source).stem), description=str(data.get("description", "")),
                 cases=cases, source=source)


def check_assertion(a: Assertion, where: str) -> None:
    """Bad assertion arguments are errors before any call: uncompilable regex, missing values."""
    if a.type in {"equals", "contains", "icontains", "starts-with", "similar", "llm-rubric"} and a.value is None:
        raise SuiteError(f"{where}: needs a `value`")
    if a.type == "regex":
        try:
            re.compile(str(a.value))
        except re.error as exc:
            raise SuiteError(f"{where}: regex {a.value!r} does not compile: {exc}") from None
    if a.type in {"json-schema"} and not isinstance(a.value, dict):
        raise SuiteError(f"{where}: `value` must be a JSON schema (a mapping)")
    if a.type in {"is-json", "json-schema"} and isinstance(a.value, dict):
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(a.value)
        except SchemaError as exc:
            raise SuiteError(f"{where}: invalid JSON schema: {exc.message}") from None
    if a.type == "length" and a.min is None and a.max is None:
        raise SuiteError(f"{where}: needs `min` and/or `max`")
    if a.type == "latency" and (a.threshold is None or a.threshold <= 0):
        raise SuiteError(f"{where}: needs a positive `threshold` in milliseconds")


def check_judge(suite: Suite, judge_configured: bool) -> None:
    """`llm-rubric` needs a judge endpoint: without one a rubric cannot be judged (and a negated one
    would pass by default), so such a suite is refused before any call."""
    if judge_configured:
        return
    for case in suite.cases:
        for j, a in enumerate(case.assertions):
            if a.type == "llm-rubric":
                raise SuiteError(f"{suite.source}: case {case.id!r} assert[{j}] ({a.describe()}) needs a judge, "
                                 "and no judge endpoint is configured (set `judge_block` to an LLMEndpoint block)")


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"suite file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML: {exc}") from None
    return parse_suite(data, str(path))


def template_variables(template: str) -> set[str]:
    return set(TEMPLATE_VAR.findall(template))


def render(template: str, variables: dict[str, Any]) -> str:
    """Substitute `{{ name }}` (promptfoo/Nunjucks style) with the case's variables."""
    return TEMPLATE_VAR.sub(lambda m: str(variables[m.group(1)]), template)


def check_variables(suite: Suite, template: str, where: str) -> None:
    """Every variable the template uses must be given by every case, before any call is made."""
    needed = template_variables(template)
    for case in suite.cases:
        missing = sorted(needed - set(case.vars))
        if missing:
            raise SuiteError(
                f"{suite.source}: case {case.id!r} gives no value for template variable(s) {missing} used by {where}"
            )
