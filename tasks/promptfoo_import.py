"""Import a promptfoo config (YAML, parsed here: no node needed) into a suite, prompts and
providers.

Understood: `prompts` (strings, `file://` paths relative to the config, `{raw|id, label}`),
`providers` of the OpenAI-compatible kind (`openai:chat:<model>`, `openai:<model>`, with
`config.apiBaseUrl`, `apiKey`, `temperature`, `max_tokens`, `top_p`, `seed`, `stop`),
`defaultTest` and `tests` with `vars`, `assert` (type, value, threshold, weight, `not-` types)
and `threshold`. Anything else that would change results is reported by name — an assertion type
or key (`transform`, a grading `provider`, `metric`), a provider kind or config key
(`response_format`, `headers` ...), a top-level key (`scenarios` ...), tests or vars from a file,
a test option, a list-valued var — and by default the import then fails, so nothing is silently
dropped. A config of the wrong shape is an error naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, SecretStr

from tasks.prompt_suite import ASSERTION_TYPES, Suite, SuiteError, parse_suite

PARAM_KEYS = {"temperature": "temperature", "max_tokens": "max_tokens", "top_p": "top_p", "seed": "seed",
              "stop": "stop", "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"}


class ImportedPrompt(BaseModel):
    label: str
    template: str


class ImportedProvider(BaseModel):
    id: str
    model: str
    base_url: str | None = None
    api_key: SecretStr | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class PromptfooImport(BaseModel):
    suite: Suite
    prompts: list[ImportedPrompt]
    providers: list[ImportedProvider]
    unsupported: list[str]


def _prompt(entry: Any, base: Path, i: int, source: str) -> ImportedPrompt:
    label = None
    if isinstance(entry, dict):
        label = entry.get("label")
        entry = entry.get("raw") or entry.get("id")
    if not isinstance(entry, str):
        raise SuiteError(f"{source}: prompts[{i}] is neither a string nor {{raw|id, label}}")
    if entry.startswith("file://"):
        path = base / entry[len("file://"):]
        try:
            return ImportedPrompt(label=label or path.name, template=path.read_text())
        except FileNotFoundError:
            raise SuiteError(f"{source}: prompts[{i}] file {path} does not exist") from None
    return ImportedPrompt(label=label or f"prompt-{i + 1}", template=entry)


# Provider config keys the import carries over (as endpoint or model parameters); any other
# (response_format, headers, max_completion_tokens, apiKeyEnvar ...) would change the calls.
PROVIDER_CONFIG_KEYS = frozenset({"apiBaseUrl", "apiHost", "apiKey", *PARAM_KEYS})
ASSERTION_KEYS = frozenset({"type", "value", "threshold", "weight"})
TOP_LEVEL_KEYS = frozenset({"description", "prompts", "providers", "tests", "defaultTest", "outputPath",
                            "sharing", "evaluateOptions", "env"})  # the last four change no answer or score


def _provider(entry: Any, i: int, unsupported: list[str]) -> ImportedProvider | None:
    config: dict[str, Any] = {}
    if isinstance(entry, dict):
        config = entry.get("config") or {}
        for key in sorted(set(entry) - {"id", "config", "label"}):
            unsupported.append(f"providers[{i}].{key}")
        entry = entry.get("id")
    if not isinstance(config, dict):
        unsupported.append(f"providers[{i}].config: not a mapping")
        config = {}
    pid = str(entry)
    parts = pid.split(":")
    if (parts[0] != "openai" or len(parts) < 2 or (len(parts) == 3 and parts[1] != "chat") or len(parts) > 3
            or not parts[-1] or pid in ("openai:chat", "openai:completion")):
        unsupported.append(f"providers[{i}]: provider {pid!r} (only openai:chat:<model> / openai:<model>)")
        return None
    for key in sorted(set(config) - PROVIDER_CONFIG_KEYS):
        unsupported.append(f"providers[{i}].config.{key}")
    return ImportedProvider(
        id=pid, model=parts[-1], base_url=config.get("apiBaseUrl") or config.get("apiHost"),
        api_key=config.get("apiKey"), params={v: config[k] for k, v in PARAM_KEYS.items() if k in config},
    )


def _assertions(asserts: list[Any], where: str, unsupported: list[str], keep_going: bool) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = []
    if not isinstance(asserts, list):
        unsupported.append(f"{where} assert: not a list of assertions")
        return kept
    for j, a in enumerate(asserts):
        kind = str(a.get("type", "")) if isinstance(a, dict) else ""
        base = kind[4:] if kind.startswith("not-") else kind
        if base not in ASSERTION_TYPES or base in {"length"}:
            unsupported.append(f"{where} assert[{j}]: assertion type {kind!r}")
            continue
        extra = sorted(set(a) - ASSERTION_KEYS)  # transform, provider (the grader), metric ... change the verdict
        if extra:
            unsupported.extend(f"{where} assert[{j}].{key}" for key in extra)
            continue
        kept.append({k: a[k] for k in ("type", "value", "threshold", "weight") if k in a})
    return kept


# Test options that leave the answers and their scoring alone; any other (`transform`, `prefix`,
# `suffix`, a grading `provider` ...) would change results and is reported.
HARMLESS_OPTIONS = frozenset({"runSerially"})


def _options_and_vars(test: dict[str, Any], where: str, unsupported: list[str]) -> None:
    """Report test options that change results, and list-valued vars (promptfoo runs one case per
    value; imported as they are, the list would be rendered into the prompt as one value)."""
    options = test.get("options") or {}
    for key in sorted(set(options) - HARMLESS_OPTIONS if isinstance(options, dict) else {"<not a mapping>"}):
        unsupported.append(f"{where}.options.{key}")
    variables = test.get("vars") or {}
    if not isinstance(variables, dict):
        unsupported.append(f"{where}.vars: {str(variables)[:60]!r} (vars from a file)")
        return
    for name, value in variables.items():
        if isinstance(value, list):
            unsupported.append(f"{where}.vars.{name}: a list of values (one case per value)")


def import_promptfoo(path: str | Path, *, skip_unsupported: bool = False) -> PromptfooImport:
    """Parse a promptfoo config; unsupported parts are listed and fail the import unless skipped."""
    path = Path(path)
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"promptfoo config {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{source}: not valid YAML: {exc}") from None
    except IsADirectoryError:
        raise SuiteError(f"promptfoo config {path} is a directory; give the config file") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: a promptfoo config is a mapping")
    unsupported: list[str] = [f"{key}" for key in sorted(set(map(str, data)) - TOP_LEVEL_KEYS)]  # scenarios, ...
    prompts_raw = data.get("prompts") or []
    prompts_raw = [prompts_raw] if isinstance(prompts_raw, str) else prompts_raw
    prompts = [_prompt(p, path.parent, i, source) for i, p in enumerate(prompts_raw)]
    if not prompts:
        raise SuiteError(f"{source}: `prompts` is empty")
    providers_raw = data.get("providers") or []
    providers_raw = [providers_raw] if isinstance(providers_raw, str | dict) else providers_raw
    providers = [p for i, e in enumerate(providers_raw) if (p := _provider(e, i, unsupported))]
    tests = data.get("tests") or []
    if isinstance(tests, str):
        unsupported.append(f"tests: loading tests from {tests!r}")
        tests = []
    if not isinstance(tests, list):
        raise SuiteError(f"{source}: tests: must be a list of tests, not {type(tests).__name__}")
    for i, t in enumerate(tests):
        if not isinstance(t, dict):
            unsupported.append(f"tests[{i}]: {str(t)[:60]!r} (tests from a file or a glob)")
    tests = [t for t in tests if isinstance(t, dict)]
    default = data.get("defaultTest") or {}
    if not isinstance(default, dict):
        raise SuiteError(f"{source}: defaultTest: must be a mapping, not {type(default).__name__}")
    for key in sorted(set(default) - {"vars", "assert", "threshold", "description", "options"}):
        unsupported.append(f"defaultTest.{key}")
    _options_and_vars(default, f"{source}: defaultTest", unsupported)
    cases = []
    for i, t in enumerate(tests):
        where = f"{source}: tests[{i}]"
        variables = t.get("vars") if isinstance(t.get("vars"), dict) else {}
        case: dict[str, Any] = {"id": str(t.get("description") or f"test-{i + 1}"), "vars": variables}
        case["assert"] = _assertions(t.get("assert") or [], where, unsupported, skip_unsupported)
        if "threshold" in t:
            case["threshold"] = t["threshold"]
        for key in sorted(set(t) - {"description", "vars", "assert", "threshold", "options", "metadata"}):
            unsupported.append(f"{where}.{key}")
        _options_and_vars(t, where, unsupported)
        cases.append(case)
    suite_data = {
        "name": str(data.get("description") or path.stem),
        "defaults": {"vars": default.get("vars") if isinstance(default.get("vars"), dict) else {},
                     "assert": _assertions(default.get("assert") or [], f"{source}: defaultTest", unsupported,
                                           skip_unsupported)},
        "cases": cases,
    }
    if unsupported and not skip_unsupported:
        raise SuiteError(f"{source}: unsupported by the importer: " + "; ".join(unsupported))
    return PromptfooImport(suite=parse_suite(suite_data, source), prompts=prompts, providers=providers,
                           unsupported=unsupported)
