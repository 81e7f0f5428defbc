"""Start, stop and inspect the local platform; every process by its PID file.

``up`` is idempotent: components already running (our PID, our start time) are left alone,
missing ones are started. Before anything starts, every needed program and port is checked,
so a busy port or a missing ``haproxy`` stops the launch with nothing half-started. A
component that does not become ready fails the launch with its log tail, and whatever this
call started is stopped again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from deployments.settings import PlatformSettings, save_effective_settings
from deployments.stack.components import Component, build_components
from deployments.stack.errors import ComponentFailedError, MissingBinaryError, PortInUseError, StackError
from deployments.stack.process_control import (
    PidRecord,
    live_process,
    log_tail,
    port_holder,
    port_is_free,
    start_process,
    stop_process,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    url: str
    pid: int | None
    running: bool
    healthy: bool
    detail: str

    def row(self) -> dict[str, str]:
        return {
            "component": self.name,
            "url": self.url,
            "pid": str(self.pid) if self.pid else "-",
            "healthy": "yes" if self.healthy else "no",
            "detail": self.detail,
        }


class Launcher:
    def __init__(self, settings: PlatformSettings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.components = build_components(settings)
        self._progress = progress or (lambda _msg: None)

    # --- paths -------------------------------------------------------------------------------
    def pid_path(self, name: str) -> Path:
        return self.settings.run_dir / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.settings.log_dir / f"{name}.log"

    def record(self, name: str) -> PidRecord | None:
        return PidRecord.load(self.pid_path(name))

    def is_running(self, name: str) -> bool:
        return live_process(self.record(name)) is not None

    def select(self, only: Iterable[str] | None = None) -> list[Component]:
        if only is None:
            return list(self.components)
        wanted = set(only)
        known = {c.name for c in self.components}
        unknown = wanted - known
        if unknown:
            raise StackError(f"unknown component(s) {sorted(unknown)}; known: {sorted(known)}")
        return [c for c in self.components if c.name in wanted]

    # --- up ----------------------------------------------------------------------------------
    def up(self, only: Iterable[str] | None = None, *, provision: bool = True) -> list[str]:
        """Start what is not running; returns the names started by this call."""
        selected = self.select(only)
        to_start = [c for c in selected if not self.is_running(c.name)]
        self._preflight(to_start)
        save_effective_settings(self.settings)
        started: list[str] = []
        try:
            for wave in self._waves(to_start):
                for comp in wave:
                    self._start(comp)
                    started.append(comp.name)
                self._await_ready(wave)
            if provision:
                self._provision({c.name for c in selected})
        except BaseException:
            for name in reversed(started):
                self._stop(name)
            raise
        return started

    def _waves(self, comps: list[Component]) -> list[list[Component]]:
        """Start order: each wave holds the components whose dependencies an earlier wave started."""
        waves: list[list[Component]] = []
        placed: set[str] = {c.name for c in self.components} - {c.name for c in comps}  # already running
        pending = list(comps)
        while pending:
            wave = [c for c in pending if set(c.depends_on) <= placed]
            if not wave:
                raise StackError(f"circular dependencies among {[c.name for c in pending]}")
            waves.append(wave)
            placed |= {c.name for c in wave}
            pending = [c for c in pending if c not in wave]
        return waves

    def _preflight(self, comps: list[Component]) -> None:
        for comp in comps:
            if comp.binary and shutil.which(comp.binary) is None:
                raise MissingBinaryError(comp.binary, comp.package or comp.binary, comp.name)
        for comp in comps:
            for port in comp.ports:
                if not port_is_free(self.settings.host, port):
                    raise PortInUseError(port, comp.name, port_holder(port))
        if self.settings.database_url is not None and any(c.name == "prefect-server" for c in comps):
            from deployments.stack.postgres_cluster import check_database_url

            check_database_url(self.settings.database_url.get_secret_value(), "LLMR_DATABASE_URL")

    def _start(self, comp: Component) -> None:
        for directory in (self.settings.run_dir, self.settings.log_dir, *comp.dirs):
            directory.mkdir(parents=True, exist_ok=True)
        for path, text in comp.config_files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if comp.prepare is not None:
            comp.prepare(self._progress)
        self._progress(f"starting {comp.name} ...")
        start_process(comp.name, comp.argv, env=comp.env, log_path=self.log_path(comp.name), pid_path=self.pid_path(comp.name))

    def _await_ready(self, comps: list[Component]) -> None:
        pending = {c.name: c for c in comps}
        deadline = time.monotonic() + self.settings.startup_timeout_s
        last: dict[str, str] = {}
        while pending:
            for name, comp in list(pending.items()):
                if not self.is_running(name):
                    raise self._failed(name, "the process exited")
                readiness = comp.ready()
                last[name] = readiness.detail
                if readiness.ready:
                    self._progress(f"{name} ready")
                    del pending[name]
            if pending and time.monotonic() > deadline:
                name = next(iter(pending))
                raise self._failed(
                    name, f"not ready after {self.settings.startup_timeout_s:g} s (last check: {last.get(name)})"
                )
            if pending:
                time.sleep(0.25)

    def _failed(self, name: str, reason: str) -> ComponentFailedError:
        path = self.log_path(name)
        return ComponentFailedError(name, reason, str(path), log_tail(path))

    def _provision(self, names: set[str]) -> None:
        from deployments.stack.provision import ensure_buckets, save_platform_blocks

        regions = [r for r in self.settings.regions if f"s3-{r.name}" in names]
        if regions:
            ensure_buckets(self.settings, regions)
        if "prefect-server" in names:
            self._progress("registering blocks and saving the platform's block documents ...")
            for note in save_platform_blocks(self.settings):
                self._progress(note)

    # --- down --------------------------------------------------------------------------------
    def down(self, only: Iterable[str] | None = None) -> list[str]:
        """Stop the components this launcher started (by PID file); returns the names stopped."""
        stopped = []
        for comp in reversed(self.select(only)):
            if self._stop(comp.name):
                stopped.append(comp.name)
        return stopped

    def _stop(self, name: str) -> bool:
        record = self.record(name)
        was_running = False
        if record is not None:
            self._progress(f"stopping {name} (pid {record.pid}) ...")
            was_running = stop_process(record)
        self.pid_path(name).unlink(missing_ok=True)
        return was_running

    # --- status ------------------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        out = []
        for comp in self.components:
            record = self.record(comp.name)
            running = live_process(record) is not None
            if running:
                readiness = comp.ready()
                healthy, detail = readiness.ready, readiness.detail
            else:
                healthy, detail = False, "not running" if record is None else f"pid {record.pid} is gone"
            out.append(ComponentStatus(comp.name, comp.url, record.pid if running and record else None, running, healthy, detail))
        return out
