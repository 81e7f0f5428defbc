"""Sync mode (replicated_put) and event-driven replication through the deployed automation."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

from deployments.automations import REPLICATE_ON_WRITE, announce_objects_written
from deployments.settings import PlatformSettings
from flows.replication import ReplicationParams, replicate
from tasks.sync_replication import ReplicatedPutIncomplete, replicated_put
from tests.fault_proxy import FaultProxy
from tests.replication_helpers import list_keys, make_pair, md5, put_all, save_target

pytestmark = pytest.mark.integration


def test_replicated_put_returns_when_every_region_holds_the_verified_object(platform: PlatformSettings) -> None:
    pair = make_pair(platform, "syncput")
    data = b"prompt v7\n" * 1000
    result = replicated_put("prompts/v7.txt", data, targets=[pair.source, pair.destination])
    assert result.missing == [] and [r.region for r in result.regions] == [pair.source, pair.destination]
    for client, bucket in ((pair.a, platform.region_a.bucket), (pair.b, platform.region_b.bucket)):
        got = client.get_object(Bucket=bucket, Key=f"{pair.prefix}/prompts/v7.txt")
        assert got["Body"].read() == data and got["Metadata"]["llmr-sha256"] == result.sha256


def test_replicated_put_names_the_region_that_lacks_it_and_the_async_flow_repairs_it(
    platform: PlatformSettings, tmp_path: Path
) -> None:
    pair = make_pair(platform, "syncfail")
    broken = FaultProxy(platform.url(platform.region_b.s3_port), fault_rate=1.0, seed=1).start()
    try:
        save_target(platform, "syncfail-dst-down", platform.region_b.bucket, pair.prefix, broken.url)
        with pytest.raises(ReplicatedPutIncomplete) as caught:
            replicated_put("weights/lora.bin", b"w" * 5000, targets=[pair.source, "syncfail-dst-down"], max_attempts=2)
    finally:
        broken.stop()
    assert caught.value.missing == caught.value.result.missing == ["syncfail-dst-down"]
    assert "syncfail-dst-down" in str(caught.value)
    assert "weights/lora.bin" not in list_keys(pair.b, platform.region_b.bucket, pair.prefix)

    report = replicate(ReplicationParams(source=pair.source, destinations=[pair.destination], resume_dir=str(tmp_path)))
    assert report.destinations[0].copied_objects == 1
    assert list_keys(pair.b, platform.region_b.bucket, pair.prefix)["weights/lora.bin"] == (5000, md5(b"w" * 5000))


def test_an_objects_written_event_runs_the_replicate_deployment_for_its_prefix(deployed: PlatformSettings) -> None:
    s = deployed
    prefix = f"events/{uuid.uuid4().hex[:8]}"
    objects = {f"{i}.bin": bytes([i]) * (100 + i) for i in range(5)}
    from tests.replication_helpers import region_client

    a, b = region_client(s, s.region_a), region_client(s, s.region_b)
    put_all(a, s.region_a.bucket, prefix, objects)
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name(REPLICATE_ON_WRITE), "automation not applied by deploy_all"
    announce_objects_written("region-a", prefix, count=len(objects))

    deadline = time.monotonic() + 240
    run = None
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["replicate"])),
            )
            mine = [r for r in runs if (r.parameters.get("params") or {}).get("prefix") == prefix]
            if mine and mine[0].state and mine[0].state.is_final():
                run = mine[0]
                break
            time.sleep(2)
    assert run is not None, "no replicate run for the announced prefix finished in time"
    assert run.state.is_completed(), run.state
    dst = list_keys(b, s.region_b.bucket, prefix)
    assert dst == {k: (len(v), md5(v)) for k, v in objects.items()}
