"""What the health monitor records, keeps and alerts on: one document, editable in the Prefect UI.

Thresholds (static and baseline-relative), the prompts whose production versions are watched,
where the time-series store lives, and which notification block alerts go to. A threshold on
an unknown metric or a window shorter than the schedule interval is refused when the document
is loaded, before the monitor probes anything.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from prefect.blocks.core import Block
from tasks.thresholds import Threshold, check_thresholds

GIB = 2**30


def default_thresholds() -> list[Threshold]:
    return [
        Threshold(metric="status", kind="static", above=1.5),  # down
        Threshold(metric="error_rate", kind="static", above=0.5),
        Threshold(metric="latency_ms", kind="baseline", factor=3.0, statistic="p95",
                  window_minutes=15, baseline_window_minutes=24 * 60),
        Threshold(metric="memory_rss_bytes", component="llm-*", kind="static", above=4 * GIB),
        Threshold(metric="replication_lag_bytes", component="sessions-*", kind="static", above=1_048_576),
    ]


class PromptWatch(BaseModel):
    """A prompt whose `production` version the monitor follows (regression results + probe traffic)."""

    name: str = Field(description="Prompt name in the registry.")
    suite_path: str | None = Field(
        default="examples/prompts/capitals.yaml",
        description="Suite whose first case gives the probe request its variables; none: no probe traffic.",
    )


class MonitoringPolicy(Block):
    """Thresholds, baselines, watched prompts and alert routing of the health monitor."""

    _block_type_name = "Monitoring Policy"
    _block_type_slug = "monitoring-policy"
    _description = "Health monitor thresholds (static and baseline-relative), watched prompts, store and alerts."
    _logo_url = "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"  # noqa: E501

    state_dir: str = Field(description="Platform state dir: PID files under run/, the store under monitoring/.")
    schedule_interval_s: float = Field(
        default=300, gt=0, description="The health-check interval that threshold windows must hold samples of; "
        "a run from the deployment warns when its schedule no longer matches.")
    retention_days: float = Field(default=7, gt=0, description="Samples older than this are dropped.")
    thresholds: list[Threshold] = Field(default_factory=default_thresholds)
    prompts: list[PromptWatch] = Field(default_factory=lambda: [PromptWatch(name="capitals")])
    prompt_registry_block: str = Field(default="region-a", description="StorageTarget block of the prompt registry.")
    prompt_registry_prefix: str = Field(default="prompts")
    prompt_endpoint_block: str = Field(default="gateway", description="LLMEndpoint that carries prompt probe traffic.")
    prompt_error_rate_shift: float = Field(
        default=0.2, gt=0, le=1, description="Flag a label move when the error rate changes by more than this.")
    prompt_latency_shift_factor: float = Field(
        default=1.5, gt=1, description="Flag a label move when p95 latency changes by more than this factor.")
    prompt_min_samples: int = Field(default=3, ge=1, description="Samples per version before a shift is judged.")
    notification_block: str | None = Field(
        default="llm-resilience-alerts", description="Custom Webhook block the failure automation notifies.")

    @model_validator(mode="after")
    def _valid_thresholds(self) -> MonitoringPolicy:
        check_thresholds(self.thresholds, self.schedule_interval_s, "monitoring-policy")
        return self

    @property
    def monitoring_dir(self) -> Path:
        return Path(self.state_dir) / "monitoring"

    @property
    def store_path(self) -> Path:
        return self.monitoring_dir / "metrics.sqlite"

    @property
    def snapshot_path(self) -> Path:
        return self.monitoring_dir / "latest.json"

    @property
    def run_dir(self) -> Path:
        return Path(self.state_dir) / "run"
