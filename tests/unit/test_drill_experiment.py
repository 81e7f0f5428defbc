"""Experiments: every shipped YAML loads; bad input is refused naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deployments.settings import PROJECT_ROOT, PlatformSettings
from tasks.drill_experiment import load_experiment, parse_experiment, plan_experiment
from tasks.errors import ConfigurationError

EXPERIMENTS = sorted((PROJECT_ROOT / "deployments" / "experiments").glob("*.yaml"))


def base(**overrides: object) -> dict:
    data = {
        "name": "t", "fault": {"kind": "crash", "target": "llm-region-a"}, "blast_radius": 1,
        "rollback": {"action": "undo-fault", "lease_s": 120},
        "steady_state": {"probes": [{"kind": "success_rate", "tolerance": 0.99}]},
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_shipped_experiment_loads_and_plans(path: Path, tmp_path: Path) -> None:
    exp = load_experiment(path)
    assert exp.name == path.stem
    plan, fault = plan_experiment(PlatformSettings(state_dir=tmp_path), exp)
    assert plan.touches == fault.touches() and len(plan.touches) <= exp.blast_radius
    assert [a.step for a in plan.actions].count("rollback") == len(plan.touches)


def test_five_fault_kinds_are_shipped() -> None:
    kinds = {load_experiment(p).fault.kind for p in EXPERIMENTS}
    assert kinds == {"crash", "hang", "error_burst", "slow", "region_outage"}


def test_missing_rollback_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="has no rollback"):
        parse_experiment(base(rollback=None), "x.yaml")


@pytest.mark.parametrize("radius", [0, -1])
def test_blast_radius_of_zero_is_refused(radius: int) -> None:
    with pytest.raises(ConfigurationError, match=r"x.yaml: invalid experiment: blast_radius: .*at least 1"):
        parse_experiment(base(blast_radius=radius), "x.yaml")


def test_blast_radius_above_the_platform_limit_is_refused(tmp_path: Path) -> None:
    exp = parse_experiment(base(blast_radius=4), "x.yaml")
    with pytest.raises(ConfigurationError, match="above the platform limit 3"):
        plan_experiment(PlatformSettings(state_dir=tmp_path), exp)


def test_fault_wider_than_the_declared_blast_radius_is_refused(tmp_path: Path) -> None:
    exp = parse_experiment(base(fault={"kind": "region_outage", "target": "region-a"}, blast_radius=1), "x")
    with pytest.raises(ConfigurationError, match="touches 3 components, above the experiment's blast_radius 1"):
        plan_experiment(PlatformSettings(state_dir=tmp_path), exp)


@pytest.mark.parametrize(("fault", "message"), [
    ({"kind": "crash", "target": "llm-region-z"}, "fault.target 'llm-region-z' is not a component"),
    ({"kind": "hang", "target": "gateway"}, "what the drill runs on or measures through"),
    ({"kind": "error_burst", "target": "redis-region-a"}, "acts on a model server"),
    ({"kind": "region_outage", "target": "region-z"}, "unknown region 'region-z'"),
    ({"kind": "custom", "target": "x", "injector": "no.such.module:Fault"}, "cannot be imported"),
    ({"kind": "custom", "target": "x", "injector": "pathlib:Path"}, "is not a tasks.fault_injectors.Fault subclass"),
])
def test_unknown_or_forbidden_targets_are_refused(fault: dict, message: str, tmp_path: Path) -> None:
    exp = parse_experiment(base(fault=fault), "x")
    with pytest.raises(ConfigurationError, match=message):
        plan_experiment(PlatformSettings(state_dir=tmp_path), exp)


@pytest.mark.parametrize(("fault", "field"), [
    ({"kind": "error_burst", "target": "llm-region-a", "status": 404}, "fault: Value error, fault.status 404"),
    ({"kind": "slow", "target": "llm-region-a"}, "latency_ms must be above 0"),
    ({"kind": "custom", "target": "x"}, "fault.injector is required"),
    ({"kind": "meteor", "target": "x"}, "fault.kind"),
])
def test_bad_fault_fields_are_named(fault: dict, field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        parse_experiment(base(fault=fault), "exp.yaml")


def test_lease_shorter_than_the_fault_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="rollback.lease_s 10 is shorter"):
        parse_experiment(base(rollback={"lease_s": 10}, duration_s=15), "x")


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigurationError, match=f"{bad}: not valid YAML"):
        load_experiment(bad)
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_experiment(tmp_path / "missing.yaml")
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(base(steady_state={"probes": [{"kind": "succes_rate", "tolerance": 1}]})))
    with pytest.raises(ConfigurationError, match=r"typo.yaml: invalid experiment: steady_state.probes.0.kind"):
        load_experiment(typo)


def test_custom_injector_is_built_with_its_options(tmp_path: Path) -> None:
    exp = parse_experiment(base(fault={"kind": "custom", "target": "pod/model-0",
                                       "injector": "tests.unit.custom_fault:PodDelete",
                                       "options": {"namespace": "llm"}}), "x")
    plan, fault = plan_experiment(PlatformSettings(state_dir=tmp_path), exp)
    assert plan.touches == ["llm/pod/model-0"]
    assert fault.namespace == "llm"


@pytest.mark.parametrize(("override", "named"), [
    ({"steady_state": {"probes": [{"kind": "success_rate", "tolerance": 99}]}}, "steady_state.probes.0: .*a fraction"),
    ({"steady_state": {"probes": [{"kind": "p99_latency_ms", "tolerance": -1}]}}, "steady_state.probes.0: .*must not be negative"),
    ({"abort_conditions": [{"signal": "error_rate", "threshold": 50}]}, "abort_conditions.0: .*0.05, not 5"),
])
def test_a_rate_given_in_percent_or_a_negative_tolerance_is_refused(override: dict, named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"x.yaml: invalid experiment: {named}"):
        parse_experiment(base(**override), "x.yaml")
