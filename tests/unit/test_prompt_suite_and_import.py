"""Suites from YAML, template variables, and the promptfoo importer (pure YAML, no node)."""

from pathlib import Path

import pytest
import yaml

from tasks.prompt_suite import SuiteError, check_variables, load_suite, parse_suite, render, template_variables
from tasks.promptfoo_import import import_promptfoo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prompts"


def test_example_suite_loads_with_defaults_merged():
    suite = load_suite(EXAMPLES / "capitals.yaml")
    assert [c.id for c in suite.cases] == ["japan", "germany", "two-plus-two"]
    japan = suite.cases[0]
    assert [a.type for a in japan.assertions] == ["latency", "length", "icontains", "similar"]
    assert suite.cases[1].assertions[-1].negate


def test_template_variables_and_render():
    assert template_variables("Hi {{ name }}, {{x}} and {{name}}") == {"name", "x"}
    assert render("Hi {{ name }}!", {"name": "Ann"}) == "Hi Ann!"


def test_a_variable_no_case_provides_is_an_error_before_any_call():
    suite = parse_suite({"name": "s", "defaults": {"assert": [{"type": "contains", "value": "x"}]},
                         "cases": [{"id": "a", "vars": {"q": 1}}, {"id": "b", "vars": {}}]}, "s.yaml")
    check_variables(suite, "no variables", "p@1")
    with pytest.raises(SuiteError, match=r"case 'b' gives no value for template variable\(s\) \['q'\]"):
        check_variables(suite, "Q: {{q}}", "p@1 template")


def test_suite_file_errors_name_the_file(tmp_path):
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncases: []\n")
    with pytest.raises(SuiteError, match="bad.yaml: `cases` must be a non-empty list"):
        load_suite(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text(yaml.safe_dump({"name": "d", "defaults": {"assert": [{"type": "is-json"}]}, "cases": [{"id": "a"}, {"id": "a"}]}))
    with pytest.raises(SuiteError, match="duplicate case id"):
        load_suite(dup)


@pytest.mark.parametrize(("suite", "named"), [
    # a typo'd `defaults` used to load as no defaults: the case had no assertion and scored 1.0
    ({"name": "s", "defualts": {"assert": [{"type": "contains", "value": "x"}]}, "cases": [{"id": "a"}]},
     r"s.yaml: unknown key\(s\) defualts"),
    ({"name": "s", "defaults": {"asserts": []}, "cases": [{"id": "a"}]}, r"s.yaml: defaults: unknown key\(s\) asserts"),
    ({"name": "s", "cases": [{"id": "a"}]}, "case 'a': no assertions"),
    ({"name": "s", "defaults": [], "cases": [{"id": "a"}]}, "defaults: must be a mapping, not list"),
    ({"name": "s", "cases": [{"id": "a", "vars": ["q"], "assert": [{"type": "is-json"}]}]}, "case 'a': vars: must be a mapping"),
    ({"name": "s", "cases": [{"id": "a", "assert": {"type": "is-json"}}]}, "case 'a': assert: must be a list of assertions"),
    ({"name": "s", "cases": [{"id": "a", "assert": ["is-json"]}]}, "case 'a': assert: must be a list of assertions"),
])
def test_a_suite_that_would_test_less_than_it_says_is_refused_by_name(suite, named):
    with pytest.raises(SuiteError, match=named):
        parse_suite(suite, "s.yaml")


def test_promptfoo_example_imports():
    imported = import_promptfoo(EXAMPLES / "promptfooconfig.yaml")
    assert imported.unsupported == []
    assert [p.label for p in imported.prompts] == ["prompt-1", "polite-echo"]
    assert imported.prompts[1].template == "Please. Reply with {{answer}}"
    (provider,) = imported.providers
    assert provider.model == "smollm2-135m-instruct" and provider.base_url == "http://127.0.0.1:8100/v1"
    assert provider.params == {"temperature": 0, "max_tokens": 12}
    suite = imported.suite
    assert [c.id for c in suite.cases] == ["paris", "json", "number"]
    paris = suite.cases[0]
    assert [(a.type, a.negate, a.weight) for a in paris.assertions] == [
        ("latency", False, 1.0), ("equals", False, 1.0), ("contains", True, 2.0)]


def test_promptfoo_unsupported_parts_are_named(tmp_path):
    cfg = tmp_path / "promptfooconfig.yaml"
    cfg.write_text(yaml.safe_dump({
        "prompts": ["Say {{x}}"],
        "providers": ["anthropic:messages:claude", "openai:chat:m"],
        "tests": [{"vars": {"x": 1}, "assert": [{"type": "javascript", "value": "output.length > 1"},
                                                {"type": "contains", "value": "1"},
                                                {"type": "not-python", "value": "True"}]}],
    }))
    with pytest.raises(SuiteError) as info:
        import_promptfoo(cfg)
    message = str(info.value)
    assert "'javascript'" in message and "'not-python'" in message and "anthropic:messages:claude" in message
    lenient = import_promptfoo(cfg, skip_unsupported=True)
    assert len(lenient.unsupported) == 3
    assert [a.type for a in lenient.suite.cases[0].assertions] == ["contains"]
    assert [p.model for p in lenient.providers] == ["m"]


def test_promptfoo_options_and_list_vars_that_change_results_are_named(tmp_path):
    cfg = tmp_path / "promptfooconfig.yaml"
    cfg.write_text(yaml.safe_dump({
        "prompts": ["Say {{x}}"],
        "providers": ["openai:chat:m"],
        "defaultTest": {"options": {"transform": "output.toUpperCase()"}},
        "tests": [{"vars": {"x": ["a", "b"]}, "options": {"runSerially": True, "prefix": "Be terse. "},
                   "assert": [{"type": "contains", "value": "a"}]}],
    }))
    with pytest.raises(SuiteError) as info:
        import_promptfoo(cfg)
    message = str(info.value)
    assert "defaultTest.options.transform" in message and "tests[0].options.prefix" in message
    assert "tests[0].vars.x: a list of values" in message and "runSerially" not in message


PROMPTFOO_BASE = {"prompts": ["Q: {{q}}"], "providers": ["openai:chat:smollm2"],
                  "tests": [{"vars": {"q": "x"}, "assert": [{"type": "contains", "value": "x"}]}]}


@pytest.mark.parametrize(("change", "named"), [
    ({"scenarios": [{"config": []}]}, "scenarios"),
    ({"tests": [{"vars": {"q": "x"}, "assert": [{"type": "contains", "value": "x", "transform": "output.trim()"}]}]},
     r"tests\[0\] assert\[0\]\.transform"),
    ({"tests": [{"vars": {"q": "x"}, "assert": [{"type": "llm-rubric", "value": "ok", "provider": "openai:gpt-4"}]}]},
     r"assert\[0\]\.provider"),
    ({"providers": [{"id": "openai:chat:m", "config": {"response_format": {"type": "json_object"}}}]},
     r"providers\[0\]\.config\.response_format"),
    ({"providers": ["openai:chat"]}, r"provider 'openai:chat'"),
    ({"tests": ["file://tests1.yaml"]}, r"tests\[0\]: 'file://tests1.yaml'"),
    ({"tests": [{"vars": "file://vars.csv", "assert": [{"type": "contains", "value": "x"}]}]}, r"tests\[0\]\.vars"),
])
def test_promptfoo_parts_that_would_change_results_are_named_not_dropped(tmp_path, change: dict, named: str) -> None:
    path = tmp_path / "promptfooconfig.yaml"
    path.write_text(yaml.safe_dump({**PROMPTFOO_BASE, **change}))
    with pytest.raises(SuiteError, match=f"unsupported by the importer: .*{named}"):
        import_promptfoo(path)


@pytest.mark.parametrize(("text", "named"), [
    ("prompts: [a\n  b: [", "not valid YAML"),
    ("prompts: [a]\ntests: {q: 1}\n", "tests: must be a list of tests, not dict"),
    ("prompts: [a]\ndefaultTest: [{vars: {q: 1}}]\n", "defaultTest: must be a mapping, not list"),
])
def test_promptfoo_configs_of_the_wrong_shape_are_errors_naming_the_file(tmp_path, text: str, named: str) -> None:
    path = tmp_path / "promptfooconfig.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=f"promptfooconfig.yaml: {named}"):
        import_promptfoo(path)
    with pytest.raises(SuiteError, match="is a directory"):
        import_promptfoo(tmp_path)
