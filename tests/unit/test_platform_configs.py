import shutil
import subprocess
from pathlib import Path

import pytest

from deployments.settings import PlatformSettings
from deployments.stack.haproxy_config import GatewayConfigError, GatewayProfile, render_haproxy_config
from deployments.stack.redis_config import render_redis_config


@pytest.fixture
def settings(tmp_path: Path) -> PlatformSettings:
    return PlatformSettings(state_dir=tmp_path, gateway_port=18100)


def test_haproxy_config_makes_region_b_a_warm_standby(settings: PlatformSettings) -> None:
    cfg = render_haproxy_config(settings)
    a, b = settings.region_a, settings.region_b
    assert "bind 127.0.0.1:18100" in cfg
    assert f"server region-a 127.0.0.1:{a.chaos_port} check weight 255" in cfg
    # Active with the smallest weight, not `backup`: HAProxy never retries onto a backup server.
    assert f"server region-b 127.0.0.1:{b.chaos_port} check weight 1 maxconn 1" in cfg and "backup" not in cfg
    assert "option httpchk GET /v1/models" in cfg
    assert "option redispatch" in cfg and "retries 2" in cfg
    assert "retry-on conn-failure empty-response 502 503 504 response-timeout" in cfg
    assert "option http-buffer-request" in cfg
    # No maxconn on the primary: a full primary would overflow to the standby instead of queueing.
    assert f"server region-a 127.0.0.1:{a.chaos_port} check weight 255\n" in cfg and "timeout queue 30s" in cfg
    assert "slowstart 10s" in cfg and "fall 2 rise 2" in cfg
    assert "observe layer7 error-limit 1 on-error mark-down" in cfg and "timeout check 1000ms" in cfg
    assert f"stats socket {settings.haproxy_socket} mode 600 level admin" in cfg


def test_haproxy_config_timeout_follows_settings(tmp_path: Path) -> None:
    cfg = render_haproxy_config(PlatformSettings(state_dir=tmp_path, gateway_timeout_server_s=2.5))
    assert "timeout server 2500ms" in cfg


def test_gateway_timeouts_must_mark_a_hung_region_down_before_the_last_retry(tmp_path: Path) -> None:
    # Checks of 8 s (two to mark down: up to 16.5 s) against two retries of 6 s: the third attempt
    # of a request sent to the hung region would meet it still up, and time out.
    with pytest.raises(GatewayConfigError, match=r"gateway_check_timeout_s=8: .* up to 16.5 s .* after 12 s"):
        render_haproxy_config(PlatformSettings(state_dir=tmp_path, gateway_timeout_server_s=6, gateway_check_timeout_s=8))
    cfg = render_haproxy_config(PlatformSettings(state_dir=tmp_path, gateway_timeout_server_s=6, gateway_check_timeout_s=4))
    assert "timeout check 4000ms" in cfg and "fall 2" in cfg and "inter 250ms" in cfg
    # A gateway that never retries a timeout has no last retry to protect (drills test such a one).
    no_retries = GatewayProfile(retries=0, retry_on_timeout=False)
    assert "retries 0" in render_haproxy_config(
        PlatformSettings(state_dir=tmp_path, gateway_timeout_server_s=6, gateway_check_timeout_s=8), no_retries)


def test_haproxy_accepts_the_generated_config(settings: PlatformSettings, tmp_path: Path) -> None:
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed: `make test` installs it (make test-system-deps)")
    path = tmp_path / "haproxy.cfg"
    path.write_text(render_haproxy_config(settings))
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_the_secondary_redis_replicates(settings: PlatformSettings, tmp_path: Path) -> None:
    a_cfg = render_redis_config(settings.region_a, host="127.0.0.1", data_dir=tmp_path, replica_of=None)
    b_cfg = render_redis_config(settings.region_b, host="127.0.0.1", data_dir=tmp_path, replica_of=settings.region_a)
    assert "replicaof" not in a_cfg
    assert f"replicaof 127.0.0.1 {settings.region_a.redis_port}" in b_cfg
    assert f"port {settings.region_b.redis_port}" in b_cfg
    assert "bind 127.0.0.1" in b_cfg and "repl-diskless-sync-delay 0" in b_cfg
