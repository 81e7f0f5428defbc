"""What the platform needs besides running processes: its buckets and its block documents."""

from __future__ import annotations

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from deployments.settings import PlatformSettings, RegionSettings

S3_REGION_NAME = "us-east-1"


def s3_client(settings: PlatformSettings, region: RegionSettings):  # noqa: ANN201 - boto3 client
    return boto3.client(
        "s3",
        endpoint_url=settings.url(region.s3_port),
        region_name=S3_REGION_NAME,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=10),
    )


def ensure_buckets(settings: PlatformSettings, regions: list[RegionSettings]) -> None:
    """Each region's bucket exists (moto keeps buckets in memory, so a restart needs this)."""
    for region in regions:
        client = s3_client(settings, region)
        try:
            client.create_bucket(Bucket=region.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise


def platform_blocks(settings: PlatformSettings) -> dict[str, list[tuple[str, object]]]:
    """The block documents describing this platform, by block type slug."""
    from pydantic import SecretStr

    from blocks import LLMEndpoint, MonitoringPolicy, SessionStore, StorageTarget

    storage = [
        (
            r.name,
            StorageTarget(
                url=f"s3://{r.bucket}",
                endpoint_url=settings.url(r.s3_port),
                region_name=S3_REGION_NAME,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=SecretStr(settings.s3_secret_access_key.get_secret_value()),
            ),
        )
        for r in settings.regions
    ]
    endpoints = [
        (r.name, LLMEndpoint(base_url=settings.model_endpoint_url(r), model=settings.llm_model_alias))
        for r in settings.regions
    ]
    endpoints.append(("gateway", LLMEndpoint(base_url=settings.gateway_url, model=settings.llm_model_alias)))
    sessions = [(r.name, SessionStore(url=f"redis://{settings.host}:{r.redis_port}/0")) for r in settings.regions]
    return {
        "storage-target": storage, "llm-endpoint": endpoints, "session-store": sessions,
        "monitoring-policy": [(MONITORING_POLICY, MonitoringPolicy(state_dir=str(settings.state_dir)))],
        "custom-webhook": [(ALERTS_WEBHOOK, alerts_webhook(settings.notification_inbox_url))],
    }


MONITORING_POLICY = "platform"
ALERTS_WEBHOOK = "llm-resilience-alerts"


def alerts_webhook(url: str):  # noqa: ANN201 - a CustomWebhookNotificationBlock
    """The webhook the failure automation notifies: by default the exporter's local inbox.

    Point ``url`` at Slack, Teams, PagerDuty or any webhook in the UI; the JSON body carries the
    automation's subject and body (run name, state and reason).
    """
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(
        name=ALERTS_WEBHOOK, url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}, timeout=5,
    )


def save_platform_blocks(settings: PlatformSettings) -> list[str]:
    """Register the block types and create the platform's block documents that do not exist yet.

    A document that exists is kept as it is, even when it differs from the settings: it may
    have been edited in the UI on purpose, and stack-up must not undo that. Returns one note
    per kept document that differs (delete it in the UI to have stack-up regenerate it).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks import ALL_BLOCK_TYPES

    notes: list[str] = []
    with temporary_settings(updates={PREFECT_API_URL: settings.prefect_api_url}):
        from prefect.blocks.notifications import CustomWebhookNotificationBlock

        for block_type in (*ALL_BLOCK_TYPES, CustomWebhookNotificationBlock):
            block_type.register_type_and_schema()
        for slug, documents in platform_blocks(settings).items():
            for name, block in documents:
                try:
                    existing = type(block).load(name)
                except ValueError:  # no such document yet
                    block.save(name)  # type: ignore[attr-defined]
                    continue
                if _fields(existing) != _fields(block):
                    notes.append(f"block {slug}/{name} differs from the platform settings; kept as edited")
    return notes


def _fields(block: object) -> dict[str, object]:
    from pydantic import SecretStr

    values = {}
    for key in type(block).model_fields:  # type: ignore[attr-defined]
        value = getattr(block, key)
        values[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return values
