"""Faults a drill can inject, behind one interface so users can add their own.

Every fault says what it would touch (for dry runs and blast-radius checks), injects with a
lease — a deadline after which it is undone even if the drill process is gone — and rolls
back idempotently. Implementations here act on the local platform: the chaos proxy in front
of a model server (error bursts, slow answers), and processes by their PID files (crash, hang).
A Kubernetes pod delete or a cloud API call would be another subclass: constructed as
``FaultClass(settings, target, **options)`` from an experiment's ``fault.injector`` and
``fault.options``, it must implement ``touches``, ``inject``, ``rollback`` and ``is_active``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path

import httpx
import psutil

from deployments.settings import PlatformSettings
from deployments.stack.chaos_proxy import CONTROL_PATH
from deployments.stack.launcher import Launcher
from deployments.stack.process_control import PidRecord, live_process, stop_process
from tasks.errors import ConfigurationError


class Fault(ABC):
    """One fault on one or more targets; ``inject`` then ``rollback`` (safe to call twice)."""

    kind: str

    @abstractmethod
    def touches(self) -> list[str]:
        """Every component this fault acts on."""

    @abstractmethod
    def inject(self, lease_s: float) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def is_active(self) -> bool: ...

    def describe(self) -> str:
        return f"{self.kind} on {', '.join(self.touches())}"

    def plan(self, component: str) -> str:
        """What ``inject`` would do to ``component``, in words (the dry run shows it)."""
        return f"{self.kind} {component}"

    def plan_rollback(self, component: str) -> str:
        return f"undo {self.kind} on {component}"


class ProxyFault(Fault):
    """The region's model endpoint answers errors (``error_burst``) or slowly (``slow``)."""

    def __init__(self, settings: PlatformSettings, region: str, *, kind: str, status: int = 503,
                 latency_ms: float = 0.0, fraction: float = 1.0) -> None:
        if kind not in {"error_burst", "slow"}:
            raise ConfigurationError(f"fault kind {kind!r} is not a proxy fault (error_burst, slow)")
        self.settings, self.kind = settings, kind
        self.region = _region(settings, region)
        self.body = {"kind": "error" if kind == "error_burst" else "slow", "status": status,
                     "latency_ms": latency_ms, "fraction": fraction}

    @property
    def _url(self) -> str:
        return self.settings.url(self.region.chaos_port, CONTROL_PATH)

    def touches(self) -> list[str]:
        return [f"chaos-{self.region.name}"]

    def plan(self, component: str) -> str:
        what = (f"answer HTTP {self.body['status']}" if self.kind == "error_burst"
                else f"add {self.body['latency_ms']:g} ms to each answer")
        return f"PUT {self._url}: llm-{self.region.name} {what} for {self.body['fraction']:.0%} of requests"

    def plan_rollback(self, component: str) -> str:
        return f"DELETE {self._url}: pass traffic through untouched again"

    def inject(self, lease_s: float) -> None:
        resp = httpx.put(self._url, json={**self.body, "expires_at": time.time() + lease_s}, timeout=5)
        if resp.status_code != 200:
            raise ConfigurationError(f"chaos-{self.region.name} refused the fault: {resp.text[:300]}")

    def rollback(self) -> None:
        httpx.delete(self._url, timeout=5).raise_for_status()

    def is_active(self) -> bool:
        return httpx.get(self._url, timeout=5).json() is not None


class ProcessFault(Fault):
    """``crash`` (SIGKILL, undone by a restart) or ``hang`` (SIGSTOP, undone by SIGCONT) of components."""

    def __init__(self, settings: PlatformSettings, components: list[str], *, kind: str) -> None:
        if kind not in {"crash", "hang"}:
            raise ConfigurationError(f"fault kind {kind!r} is not a process fault (crash, hang)")
        self.settings, self.kind, self.components = settings, kind, list(components)
        self.launcher = Launcher(settings)
        known = {c.name for c in self.launcher.components}
        unknown = [c for c in components if c not in known]
        if unknown:
            raise ConfigurationError(f"unknown target component(s) {unknown}; known: {sorted(known)}")
        self._leases: list[PidRecord] = []

    def touches(self) -> list[str]:
        return list(self.components)

    def plan(self, component: str) -> str:
        proc = live_process(self.launcher.record(component))
        where = f"pid {proc.pid}" if proc else "not running now: the drill would refuse"
        return f"{'SIGKILL' if self.kind == 'crash' else 'SIGSTOP'} {component} ({where})"

    def plan_rollback(self, component: str) -> str:
        return f"{'restart' if self.kind == 'crash' else 'SIGCONT'} {component}"

    def inject(self, lease_s: float) -> None:
        deadline = time.time() + lease_s
        for name in self.components:
            proc = live_process(self.launcher.record(name))
            if proc is None:
                raise ConfigurationError(f"{name} is not running; there is nothing to {self.kind}")
            # The lease first: whatever happens to this process next, the fault will be undone.
            self._leases.append(self._start_lease(name, deadline))
            sig = signal.SIGKILL if self.kind == "crash" else signal.SIGSTOP
            os.killpg(proc.pid, sig) if os.getpgid(proc.pid) == proc.pid else os.kill(proc.pid, sig)
            if self.kind == "crash":
                proc.wait(10)
            else:
                _await_status(proc, psutil.STATUS_STOPPED)

    def _start_lease(self, component: str, deadline: float) -> PidRecord:
        from deployments.stack.process_control import start_process

        action = "restart" if self.kind == "crash" else "resume"
        log = self.settings.log_dir / "fault-leases.log"
        pid_path = self.settings.run_dir / "leases" / f"{component}.{os.getpid()}.pid"
        return start_process(
            f"lease-{component}",
            [sys.executable, "-m", "deployments.stack.fault_lease", "--state-dir", str(self.settings.state_dir),
             "--component", component, "--action", action, "--at", f"{deadline:.3f}"],
            env={}, log_path=log, pid_path=pid_path, cwd=Path(__file__).resolve().parents[1],
        )

    def rollback(self) -> None:
        """Undo the fault, then cancel its leases: if the undo raises, the leases stay armed and
        still undo the fault at their deadline (a second ``rollback`` may also retry it)."""
        self._undo()
        for lease in self._leases:
            stop_process(lease, timeout_s=2)
        self._leases.clear()

    def _undo(self) -> None:
        if self.kind == "hang":
            for name in self.components:
                proc = live_process(self.launcher.record(name))
                if proc is not None:
                    os.killpg(proc.pid, signal.SIGCONT) if os.getpgid(proc.pid) == proc.pid else os.kill(proc.pid, signal.SIGCONT)
                    _await_status(proc, psutil.STATUS_STOPPED, negate=True)
        else:
            self.launcher.up(self.components)

    def is_active(self) -> bool:
        for name in self.components:
            proc = live_process(self.launcher.record(name))
            if proc is None or proc.status() == psutil.STATUS_STOPPED:
                return True
        return False


def _await_status(proc: psutil.Process, status: str, *, negate: bool = False, timeout_s: float = 5.0) -> None:
    """Signals are delivered asynchronously: wait until the process is (or is no longer) ``status``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (proc.status() == status) != negate:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)


def region_outage(settings: PlatformSettings, region: str) -> ProcessFault:
    """The whole region unreachable at once: its model server, session store and S3 endpoint.

    The processes are stopped (SIGSTOP), not killed: a real regional outage makes a region
    unreachable, it does not wipe it. Killing moto would lose its in-memory buckets, and killing
    Redis would restart it from an older RDB that its replica would then resync to.
    """
    r = _region(settings, region)
    return ProcessFault(settings, [f"llm-{r.name}", f"redis-{r.name}", f"s3-{r.name}"], kind="hang")


def _region(settings: PlatformSettings, name: str):  # noqa: ANN202
    for region in settings.regions:
        if region.name == name:
            return region
    raise ConfigurationError(f"unknown region {name!r}; known: {[r.name for r in settings.regions]}")
