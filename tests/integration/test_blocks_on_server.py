"""Blocks saved on and loaded from the real server; their secrets never reach logs or artifacts."""

import time
import uuid

import httpx
import pytest
from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from pydantic import SecretStr

from blocks import LLMEndpoint, SessionStore, StorageTarget
from deployments.settings import PlatformSettings

pytestmark = pytest.mark.integration


def test_platform_blocks_were_saved_by_the_launcher(platform: PlatformSettings) -> None:
    storage = StorageTarget.load("region-b")
    assert storage.url == f"s3://{platform.region_b.bucket}"
    assert storage.endpoint_url == platform.url(platform.region_b.s3_port)
    assert LLMEndpoint.load("gateway").base_url == platform.gateway_url
    assert SessionStore.load("region-a").url.endswith(f":{platform.region_a.redis_port}/0")


def test_block_round_trip_keeps_secrets_out_of_logs_and_api(platform: PlatformSettings) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    name = f"secret-test-{uuid.uuid4().hex[:8]}"
    base = StorageTarget.load("region-a")
    target = base.model_copy(update={"secret_access_key": SecretStr(secret), "access_key_id": base.access_key_id})
    target.save(name)
    LLMEndpoint(base_url=platform.gateway_url, model="m", api_key=SecretStr(secret)).save(name)

    loaded = StorageTarget.load(name)
    assert loaded.secret_access_key.get_secret_value() == secret
    assert LLMEndpoint.load(name).api_key.get_secret_value() == secret

    # The API does not hand the secret out unless asked to.
    resp = httpx.get(f"{platform.prefect_api_url}/block_types/slug/storage-target/block_documents/name/{name}", timeout=10)
    resp.raise_for_status()
    assert secret not in resp.text

    @flow(name="uses-a-secret-block")
    def uses_block(block_name: str) -> int:
        logger = get_run_logger()
        store = StorageTarget.load(block_name)
        logger.info("loaded %r", store)
        print(store)
        fs = store.filesystem()
        fs.pipe_file(store.path("secret-test.txt"), b"hello")
        size = len(fs.cat_file(store.path("secret-test.txt")))
        fs.rm_file(store.path("secret-test.txt"))
        logger.info("endpoint %s", LLMEndpoint.load(block_name))
        return size

    state = uses_block(name, return_state=True)
    assert state.result() == 5
    run_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        deadline = time.time() + 30  # logs reach the API asynchronously
        logs = client.read_logs(log_filter=run_filter)
        while not any("endpoint" in log.message for log in logs):
            assert time.time() < deadline, "the flow run's logs never reached the API"
            time.sleep(0.5)
            logs = client.read_logs(log_filter=run_filter)
        artifacts = client.read_artifacts()
    assert any("loaded" in log.message for log in logs)
    assert all(secret not in log.message for log in logs)
    assert all(secret not in str(a.data) for a in artifacts)


def test_stack_up_keeps_a_block_edited_in_the_ui(platform: PlatformSettings) -> None:
    from deployments.stack.provision import save_platform_blocks

    original = LLMEndpoint.load("region-b")
    edited = original.model_copy(update={"read_timeout_s": 7.0})
    edited.save("region-b", overwrite=True)
    try:
        notes = save_platform_blocks(platform)  # what every `make stack-up` runs
        assert LLMEndpoint.load("region-b").read_timeout_s == 7.0
        assert notes == ["block llm-endpoint/region-b differs from the platform settings; kept as edited"]
    finally:
        original.save("region-b", overwrite=True)
    assert save_platform_blocks(platform) == []


def test_block_types_register_with_the_prefect_cli(platform: PlatformSettings) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    prefect = Path(sys.executable).parent / "prefect"
    result = subprocess.run(
        [str(prefect), "block", "register", "-m", "blocks"],
        env={**os.environ, **platform.prefect_env()}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("Storage Target", "LLM Endpoint", "Session Store"):
        assert name in result.stdout
