"""Free loopback ports, so test platforms never collide with a running demo or each other."""

from __future__ import annotations

import socket
from pathlib import Path

from deployments.settings import PlatformSettings


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def settings_on_free_ports(state_dir: Path, **extra: object) -> PlatformSettings:
    p = free_ports(12)
    return PlatformSettings(
        state_dir=state_dir,
        prefect_port=p[0],
        gateway_port=p[1],
        metrics_port=p[10],
        region_a={"name": "region-a", "s3_port": p[2], "llm_port": p[3], "chaos_port": p[8], "redis_port": p[4], "bucket": "llmr-test-region-a"},
        region_b={"name": "region-b", "s3_port": p[5], "llm_port": p[6], "chaos_port": p[9], "redis_port": p[7], "bucket": "llmr-test-region-b"},
        postgres_port=p[11],
        **extra,
    )
