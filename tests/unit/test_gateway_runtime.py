"""The gateway's runtime API: parsing `show servers state`, refusing bad commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.settings import PlatformSettings
from deployments.stack.haproxy_config import GatewayProfile, render_haproxy_config
from deployments.stack.haproxy_runtime import GatewayRuntimeError, HAProxyRuntime, parse_servers_state
from tasks.errors import ConfigurationError

STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 llm_models 1 region-a 127.0.0.1 2 1 100 100 1 8 2 0 6 0 0 0 - 50853 - 0 0 - - 0
3 llm_models 2 region-b 127.0.0.1 2 0 100 100 1 8 2 0 6 0 0 0 - 50493 - 0 0 - - 0
3 llm_models 3 region-c 127.0.0.1 0 0 0 0 0 8 2 0 6 0 0 0 - 50493 - 0 0 - - 0
"""


def test_parse_servers_state() -> None:
    servers = {s.name: s for s in parse_servers_state(STATE)}
    assert servers["region-a"].maintenance and not servers["region-a"].serving
    assert servers["region-b"].serving and servers["region-b"].weight == 100
    assert servers["region-c"].operational == "stopped" and servers["region-c"].weight == 0


def test_unexpected_output_is_an_error() -> None:
    with pytest.raises(GatewayRuntimeError, match="unexpected"):
        parse_servers_state("Unknown command\n")


def test_bad_commands_are_refused_before_the_socket(tmp_path: Path) -> None:
    rt = HAProxyRuntime(tmp_path / "missing.sock", "llm_models")
    with pytest.raises(ConfigurationError, match="weight must be 0..256"):
        rt.set_weight("region-a", 300)
    with pytest.raises(ConfigurationError, match="ready, drain or maint"):
        rt.set_state("region-a", "off")
    with pytest.raises(GatewayRuntimeError, match="missing.sock"):
        rt.servers()


def test_bad_gateway_profile_drops_backup_retries_and_passive_checks(tmp_path: Path) -> None:
    cfg = render_haproxy_config(PlatformSettings(state_dir=tmp_path),
                                GatewayProfile(standby_region=False, retries=0, passive_checks=False),
                                port=18999, admin_socket=tmp_path / "bad.sock")
    assert "region-b" not in cfg and "retries 0" in cfg and "observe layer7 error-limit" not in cfg
    assert "bind 127.0.0.1:18999" in cfg and f"stats socket {tmp_path / 'bad.sock'}" in cfg
