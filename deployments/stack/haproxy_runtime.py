"""The gateway's runtime API: HAProxy's admin socket, spoken to directly (no socat needed).

The failover and failback flows move traffic with it (``set server ... state``, ``set weight``),
and drills read which servers HAProxy considers up (``show servers state``) to time detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deployments.stack.readiness import haproxy_command
from tasks.errors import ConfigurationError, LLMResilienceError


class GatewayRuntimeError(LLMResilienceError):
    """The admin socket refused a command or could not be reached."""


# `show servers state` columns (HAProxy 2.x, format version 1).
_SRV_OP_STATE = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}
_SRV_ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20  # forced, inherited, resolution/config maintenance


@dataclass(frozen=True)
class ServerState:
    backend: str
    name: str
    operational: str  # stopped | starting | running | stopping
    maintenance: bool
    weight: int
    address: str

    @property
    def serving(self) -> bool:
        # "starting" is a server back up and in slowstart: it already takes (a growing share of) traffic.
        return self.operational in {"running", "starting"} and not self.maintenance


def parse_servers_state(text: str) -> list[ServerState]:
    """Parse ``show servers state``: a version line, a '#' header naming the columns, then rows."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line.lstrip("# ").split() for line in lines if line.startswith("#")), None)
    if header is None:
        raise GatewayRuntimeError(f"unexpected `show servers state` output: {text[:200]!r}")
    col = {name: i for i, name in enumerate(header)}
    states = []
    for line in lines:
        if line.startswith("#") or line.strip() == "1":
            continue
        f = line.split()
        states.append(ServerState(
            backend=f[col["be_name"]], name=f[col["srv_name"]],
            operational=_SRV_OP_STATE.get(int(f[col["srv_op_state"]]), "unknown"),
            maintenance=bool(int(f[col["srv_admin_state"]]) & _SRV_ADMIN_MAINT),
            weight=int(f[col["srv_uweight"]]), address=f[col["srv_addr"]],
        ))
    return states


class HAProxyRuntime:
    """One command per connection, as the admin socket works without `prompt` mode."""

    def __init__(self, socket_path: Path | str, backend: str, *, timeout_s: float = 5.0) -> None:
        self.socket_path = Path(socket_path)
        self.backend = backend
        self.timeout_s = timeout_s

    def command(self, line: str) -> str:
        if "\n" in line:
            raise ConfigurationError(f"one admin command per call, got {line!r}")
        try:
            return haproxy_command(self.socket_path, line, timeout_s=self.timeout_s)
        except OSError as exc:
            raise GatewayRuntimeError(f"gateway admin socket {self.socket_path}: {exc}") from exc

    def servers(self) -> dict[str, ServerState]:
        out = self.command(f"show servers state {self.backend}")
        return {s.name: s for s in parse_servers_state(out) if s.backend == self.backend}

    def _checked(self, line: str) -> None:
        out = self.command(line).strip()
        # Successful set commands answer nothing (or a short notice); errors name themselves.
        if out and any(word in out.lower() for word in ("unknown", "no such", "invalid", "require", "error")):
            raise GatewayRuntimeError(f"gateway refused {line!r}: {out}")

    def set_state(self, server: str, state: str) -> None:
        if state not in {"ready", "drain", "maint"}:
            raise ConfigurationError(f"server state must be ready, drain or maint, got {state!r}")
        self._checked(f"set server {self.backend}/{server} state {state}")

    def set_weight(self, server: str, weight: int) -> None:
        if not 0 <= weight <= 256:
            raise ConfigurationError(f"weight must be 0..256, got {weight}")
        self._checked(f"set weight {self.backend}/{server} {weight}")
