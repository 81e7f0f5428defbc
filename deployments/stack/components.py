"""The processes that make up the local platform, derived from the settings.

Each component says how to start it, which ports it binds, which external program it needs,
and how to tell that it is ready. The launcher knows nothing else about them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deployments.settings import PlatformSettings, RegionSettings
from deployments.stack.haproxy_config import render_haproxy_config
from deployments.stack.model_file import smollm2_gguf_path
from deployments.stack.chaos_proxy import CONTROL_PATH
from deployments.stack.readiness import (
    Readiness,
    haproxy_admin,
    http_ok,
    llm_answers,
    postgres_accepting,
    prefect_worker_online,
    redis_ping,
)
from deployments.stack.redis_config import render_redis_config

WORKER_NAME = "llm-resilience-worker-1"


def worker_name(index: int) -> str:
    """Worker ``index`` (1-based) on the platform's work pool."""
    return f"llm-resilience-worker-{index}"


def worker_component(index: int) -> str:
    """Component names: ``prefect-worker`` for the first worker (as always), ``prefect-worker-2`` ..."""
    return "prefect-worker" if index == 1 else f"prefect-worker-{index}"


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    url: str
    ports: tuple[int, ...]
    ready: Callable[[], Readiness]
    binary: str | None = None  # external program it needs, and the Debian package that has it
    package: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    config_files: dict[Path, str] = field(default_factory=dict)
    dirs: tuple[Path, ...] = ()  # created before start
    depends_on: tuple[str, ...] = ()
    # setup before each start (e.g. initdb); it may report a line through the callable it is given
    prepare: Callable[[Callable[[str], None]], None] | None = None


def _venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def build_components(settings: PlatformSettings) -> list[Component]:
    """All components in start order (stop order is the reverse)."""
    host = settings.host
    prefect_env = settings.prefect_env()
    comps: list[Component] = [_postgres(settings)] if settings.runs_postgres else []
    comps.append(
        Component(
            name="prefect-server",
            argv=[
                sys.executable, "-m", "deployments.stack.prefect_server",
                "--sqlite-busy-timeout-ms", str(round(settings.sqlite_busy_timeout_s * 1000)),
                "server", "start", "--host", host, "--port", str(settings.prefect_port),
            ],
            url=settings.prefect_ui_url,
            ports=(settings.prefect_port,),
            ready=lambda: http_ok(f"{settings.prefect_api_url}/health"),
            env=settings.prefect_server_env(),
            depends_on=("postgres",) if settings.runs_postgres else (),
        )
    )
    for region in settings.regions:
        comps.append(_s3(settings, region))
    for region in settings.regions:
        replica_of = settings.region_a if region is settings.region_b else None
        comps.append(_redis(settings, region, replica_of))
    model = str(smollm2_gguf_path())
    for region in settings.regions:
        comps.append(_llm(settings, region, model))
    for region in settings.regions:
        comps.append(_chaos_proxy(settings, region))
    haproxy_cfg = settings.config_dir / "haproxy.cfg"
    comps.append(
        Component(
            name="gateway",
            argv=["haproxy", "-db", "-f", str(haproxy_cfg)],
            url=settings.gateway_url,
            ports=(settings.gateway_port,),
            ready=lambda: haproxy_admin(settings.haproxy_socket),
            binary="haproxy",
            package="haproxy",
            config_files={haproxy_cfg: render_haproxy_config(settings)},
        )
    )
    comps.append(_metrics_exporter(settings))
    comps += [_worker(settings, i) for i in range(1, settings.workers + 1)]
    return comps


def _worker(settings: PlatformSettings, index: int) -> Component:
    name = worker_name(index)
    return Component(
        name=worker_component(index),
        argv=[
            _venv_bin("prefect"), "worker", "start", "--pool", settings.work_pool, "--type", "process", "--name", name,
            *(["--limit", str(settings.worker_limit)] if settings.worker_limit else []),
        ],
        url=f"{settings.prefect_ui_url}/work-pools/work-pool/{settings.work_pool}",
        ports=(),
        ready=lambda: prefect_worker_online(settings.prefect_api_url, settings.work_pool, name),
        env=settings.prefect_env(),
        depends_on=("prefect-server",),
        prepare=(lambda progress: _skip_missed_runs(settings, progress)) if index == 1 else None,
    )


def _skip_missed_runs(settings: PlatformSettings, progress: Callable[[str], None]) -> None:
    """Before the first worker starts: cancel the scheduled runs missed while the platform was
    down. If the server never answers, the worker does not start (see stack/missed_runs.py)."""
    from deployments.stack.missed_runs import cancel_missed_runs_patiently

    cancel_missed_runs_patiently(settings.prefect_api_url, settings.missed_run_grace_s, settings.work_pool,
                                 progress=progress)


def _postgres(settings: PlatformSettings) -> Component:
    from deployments.stack.postgres_cluster import ensure_cluster, pg_bin, postgres_argv

    return Component(
        name="postgres",
        argv=postgres_argv(settings),
        url=f"postgresql://{settings.host}:{settings.postgres_port}/prefect",
        ports=(settings.postgres_port,),
        ready=lambda: postgres_accepting(settings.host, settings.postgres_port),
        binary=pg_bin("postgres"),
        package="postgresql",
        prepare=lambda _progress: ensure_cluster(settings),
    )


def _s3(settings: PlatformSettings, region: RegionSettings) -> Component:
    return Component(
        name=f"s3-{region.name}",
        argv=[sys.executable, "-m", "moto.server", "-H", settings.host, "-p", str(region.s3_port)],
        url=settings.url(region.s3_port),
        ports=(region.s3_port,),
        ready=lambda: http_ok(settings.url(region.s3_port, "/moto-api/data.json")),
    )


def _redis(settings: PlatformSettings, region: RegionSettings, replica_of: RegionSettings | None) -> Component:
    conf = settings.config_dir / f"redis-{region.name}.conf"
    data_dir = settings.data_dir / f"redis-{region.name}"
    return Component(
        name=f"redis-{region.name}",
        argv=["redis-server", str(conf)],
        url=f"redis://{settings.host}:{region.redis_port}/0",
        ports=(region.redis_port,),
        ready=lambda: redis_ping(settings.host, region.redis_port),
        binary="redis-server",
        package="redis-server",
        config_files={conf: render_redis_config(region, host=settings.host, data_dir=data_dir, replica_of=replica_of)},
        dirs=(data_dir,),
    )


def _llm(settings: PlatformSettings, region: RegionSettings, model: str) -> Component:
    return Component(
        name=f"llm-{region.name}",
        argv=[
            sys.executable, "-m", "llama_cpp.server", "--model", model, "--model_alias", settings.llm_model_alias,
            "--host", settings.host, "--port", str(region.llm_port), "--n_ctx", str(settings.llm_context_tokens),
            "--n_threads", str(settings.model_server_threads), "--n_threads_batch", str(settings.model_server_threads),
            "--verbose", "False",
        ],
        url=settings.url(region.llm_port, "/v1"),
        ports=(region.llm_port,),
        ready=lambda: llm_answers(settings.url(region.llm_port, "/v1"), settings.llm_model_alias),
    )


def _chaos_proxy(settings: PlatformSettings, region: RegionSettings) -> Component:
    return Component(
        name=f"chaos-{region.name}",
        argv=[
            sys.executable, "-m", "deployments.stack.chaos_proxy",
            "--listen", f"{settings.host}:{region.chaos_port}", "--upstream", settings.url(region.llm_port),
        ],
        url=settings.model_endpoint_url(region),
        ports=(region.chaos_port,),
        ready=lambda: http_ok(settings.url(region.chaos_port, CONTROL_PATH)),
    )


def _metrics_exporter(settings: PlatformSettings) -> Component:
    return Component(
        name="metrics-exporter",
        argv=[
            sys.executable, "-m", "deployments.stack.metrics_exporter",
            "--listen", f"{settings.host}:{settings.metrics_port}", "--state-dir", str(settings.state_dir),
        ],
        url=settings.metrics_url,
        ports=(settings.metrics_port,),
        ready=lambda: http_ok(settings.metrics_url),
    )
