"""A failover experiment, Chaos Toolkit style: steady state, method (one fault), rollback, SLOs.

Experiments live as YAML files (deployments/experiments/) and arrive as flow parameters; both
go through this one model, so a typo is caught with the file and field named before anything
is touched. ``plan_experiment`` resolves an experiment against the running platform into the
exact list of components and actions a run would touch: that is the dry run, and the same
checks (known target, blast radius, rollback present) guard the real run.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from deployments.settings import PlatformSettings
from tasks.errors import ConfigurationError
from tasks.strict_input import StrictInput

FaultKind = Literal["crash", "hang", "error_burst", "slow", "region_outage", "custom"]
# Components a drill may never touch: the drill runs on them, or measures through them.
PROTECTED_COMPONENTS = {"prefect-server", "prefect-worker", "gateway"}


class FaultSpec(StrictInput):
    """What goes wrong, and where. ``target`` is a component (``llm-region-a``) or, for a
    region outage, a region (``region-a``)."""

    kind: FaultKind
    target: str = Field(min_length=1)
    status: int = Field(default=503, description="error_burst: the HTTP status answered (5xx or 429).")
    latency_ms: float = Field(default=0.0, ge=0, le=600_000, description="slow: delay added to each answer.")
    fraction: float = Field(default=1.0, gt=0, le=1, description="error_burst/slow: share of requests hit.")
    injector: str | None = Field(default=None, description="custom: 'package.module:FaultClass'.")
    options: dict[str, Any] = Field(default_factory=dict, description="custom: keyword arguments of the class.")

    @model_validator(mode="after")
    def _kind_fields(self) -> FaultSpec:
        if self.kind == "error_burst" and not (self.status == 429 or 500 <= self.status <= 599):
            raise ValueError(f"fault.status {self.status} is not 429 or 5xx")
        if self.kind == "slow" and self.latency_ms <= 0:
            raise ValueError("fault.latency_ms must be above 0 for a slow fault")
        if (self.kind == "custom") != (self.injector is not None):
            raise ValueError("fault.injector is required for kind 'custom' and only for it")
        return self


class RollbackSpec(StrictInput):
    """How the fault is undone. ``undo-fault`` is the injector's own rollback; the lease undoes
    the fault by itself even if the drill's process is killed."""

    action: Literal["undo-fault"] = "undo-fault"
    lease_s: float = Field(default=180.0, gt=0, le=3600, description="The fault ends by itself after this.")


class Probe(StrictInput):
    """One steady-state check over the drill's own traffic, with its tolerance."""

    kind: Literal["success_rate", "p99_latency_ms", "gateway_completion", "session_continuity"]
    tolerance: float = Field(
        description="success_rate: minimum fraction; p99_latency_ms: maximum; gateway_completion: "
        "minimum successes in the window; session_continuity: most acknowledged turns missing.",
    )

    @model_validator(mode="after")
    def _tolerance_in_its_unit(self) -> Probe:
        if self.kind == "success_rate" and not 0 <= self.tolerance <= 1:
            raise ValueError(f"tolerance {self.tolerance:g}: a success_rate tolerance is a fraction (0.99, not 99)")
        if self.tolerance < 0:
            raise ValueError(f"tolerance {self.tolerance:g}: must not be negative")
        return self


class SteadyState(StrictInput):
    probes: list[Probe] = Field(min_length=1)
    window_s: float = Field(default=5.0, gt=0, le=300, description="Traffic window each check looks at.")


class AbortCondition(StrictInput):
    """An SLO signal checked continuously while the fault is in place (AWS FIS stop condition)."""

    signal: Literal["error_rate", "p99_latency_ms"]
    threshold: float = Field(gt=0)
    window_s: float = Field(default=5.0, gt=0, le=300)

    @model_validator(mode="after")
    def _rate_is_a_fraction(self) -> AbortCondition:
        if self.signal == "error_rate" and self.threshold > 1:
            raise ValueError(f"threshold {self.threshold:g}: an error_rate is a fraction (0.05, not 5)")
        return self


class LoadProfile(StrictInput):
    """Simulated users chatting through the gateway, their history in the session store."""

    rate_rps: float = Field(default=1.5, gt=0, le=50, description="Requests per second; one region alone must keep up (~3/s here).")
    users: int = Field(default=12, ge=1, le=500)
    max_tokens: int = Field(default=6, ge=1, le=256)
    history_turns: int = Field(default=2, ge=0, le=50, description="Past turns sent with each request.")
    session_mode: Literal["async", "sync"] = Field(
        default="async", description="sync: a turn is acknowledged only after the replica has it (WAIT).")
    request_timeout_s: float = Field(default=20.0, gt=0, le=300)


class Slo(StrictInput):
    """What the drill must achieve; any breach fails it, naming the SLO."""

    max_detect_ms: float | None = Field(default=None, gt=0)
    max_failover_ms: float | None = Field(default=None, gt=0)
    max_failed_per_1000: float | None = Field(default=None, ge=0)
    max_p99_ms_during: float | None = Field(default=None, gt=0)
    max_lost_turns: int | None = Field(default=None, ge=0)


class Experiment(StrictInput):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    fault: FaultSpec
    duration_s: float = Field(default=15.0, gt=0, le=600, description="How long the fault stays in place.")
    warmup_s: float = Field(default=6.0, ge=1, le=300, description="Steady traffic before the fault.")
    blast_radius: int = Field(description="Most components this experiment may touch (1..platform limit).")
    rollback: RollbackSpec | None = None
    recovery_deadline_s: float = Field(default=30.0, gt=0, le=1800)
    steady_state: SteadyState
    abort_conditions: list[AbortCondition] = Field(default_factory=list)
    slo: Slo = Field(default_factory=Slo)
    load: LoadProfile = Field(default_factory=LoadProfile)
    session_failover: bool = Field(
        default=False, description="Promote the secondary's session store when the primary's is lost "
        "(as Redis Sentinel would), and fail it back after the rollback.")

    @field_validator("blast_radius")
    @classmethod
    def _positive_blast_radius(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"blast_radius {value} touches nothing; it must be at least 1")
        return value

    @model_validator(mode="after")
    def _has_rollback(self) -> Experiment:
        if self.rollback is None:
            raise ValueError(
                f"fault {self.fault.kind} on {self.fault.target} has no rollback; add `rollback: "
                "{action: undo-fault}` (a fault that cannot be undone is never injected)")
        if self.rollback.lease_s < self.duration_s + self.warmup_s:
            raise ValueError(f"rollback.lease_s {self.rollback.lease_s:g} is shorter than the fault's "
                             f"duration_s {self.duration_s:g} plus warmup_s {self.warmup_s:g}")
        return self


def parse_experiment(data: object, source: str) -> Experiment:
    """Validate ``data``; errors name ``source`` and each bad field."""
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"{source}: invalid experiment: {problems}") from None


def load_experiment(path: Path | str) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"experiment file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {exc}") from None
    return parse_experiment(data, str(path))


class PlannedAction(BaseModel):
    step: str
    component: str
    detail: str


class DrillPlan(BaseModel):
    """Everything a run of the experiment would touch; the dry run's answer."""

    experiment: str
    fault: str
    touches: list[str]
    blast_radius: int
    actions: list[PlannedAction]
    load: LoadProfile
    probes: list[Probe]
    slo: Slo


def build_fault(settings: PlatformSettings, spec: FaultSpec):  # noqa: ANN201 - Fault, imported lazily
    """The injector for ``spec``; constructing one touches nothing."""
    from tasks.fault_injectors import Fault, ProcessFault, ProxyFault, region_outage

    known = _components(settings)
    if spec.kind == "region_outage":
        return region_outage(settings, spec.target)
    if spec.kind == "custom":
        return _custom_fault(settings, spec, Fault)
    if spec.target not in known:
        raise ConfigurationError(f"fault.target {spec.target!r} is not a component of the platform; known: {sorted(known)}")
    if spec.target in PROTECTED_COMPONENTS:
        raise ConfigurationError(f"fault.target {spec.target!r} is what the drill runs on or measures through; "
                                 f"pick one of {sorted(known - PROTECTED_COMPONENTS)}")
    if spec.kind in {"error_burst", "slow"}:
        region = spec.target.removeprefix("llm-")
        if not spec.target.startswith("llm-"):
            raise ConfigurationError(f"fault.target {spec.target!r}: {spec.kind} acts on a model server (llm-<region>)")
        return ProxyFault(settings, region, kind=spec.kind, status=spec.status, latency_ms=spec.latency_ms,
                          fraction=spec.fraction)
    return ProcessFault(settings, [spec.target], kind=spec.kind)


def _custom_fault(settings: PlatformSettings, spec: FaultSpec, base: type):  # noqa: ANN202
    module_name, _, class_name = (spec.injector or "").partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"fault.injector {spec.injector!r} cannot be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigurationError(f"fault.injector {spec.injector!r} is not a tasks.fault_injectors.Fault subclass")
    try:
        return cls(settings, spec.target, **spec.options)
    except TypeError as exc:
        raise ConfigurationError(f"fault.options do not fit {spec.injector}: {exc}") from None


def _components(settings: PlatformSettings) -> set[str]:
    from deployments.stack.launcher import Launcher

    return {c.name for c in Launcher(settings).components}


def plan_experiment(settings: PlatformSettings, experiment: Experiment):  # noqa: ANN201 - (DrillPlan, Fault)
    """Check the experiment against the platform and list what it would touch; touches nothing."""
    fault = build_fault(settings, experiment.fault)
    touches = fault.touches()
    limit = settings.drill_max_blast_radius
    if experiment.blast_radius > limit:
        raise ConfigurationError(f"blast_radius {experiment.blast_radius} is above the platform limit "
                                 f"{limit} (setting drill_max_blast_radius)")
    if len(touches) > experiment.blast_radius:
        raise ConfigurationError(f"fault {fault.describe()} touches {len(touches)} components, above the "
                                 f"experiment's blast_radius {experiment.blast_radius}")
    assert experiment.rollback is not None  # the model guarantees it
    actions = [PlannedAction(step="inject", component=c, detail=fault.plan(c)) for c in touches]
    actions += [PlannedAction(step="lease", component=c,
                              detail=f"undone by itself {experiment.rollback.lease_s:g} s after injection")
                for c in touches]
    if experiment.session_failover:
        a, b = settings.region_a.name, settings.region_b.name
        actions.append(PlannedAction(step="session-failover", component=f"redis-{b}",
                                     detail=f"promoted to primary when redis-{a} stops answering"))
        actions.append(PlannedAction(step="session-failback", component=f"redis-{a}",
                                     detail=f"re-synced from redis-{b}, then primary again (writes paused briefly)"))
    actions += [PlannedAction(step="rollback", component=c, detail=fault.plan_rollback(c)) for c in touches]
    plan = DrillPlan(experiment=experiment.name, fault=fault.describe(), touches=touches,
                     blast_radius=experiment.blast_radius, actions=actions, load=experiment.load,
                     probes=experiment.steady_state.probes, slo=experiment.slo)
    return plan, fault
