"""Start, recognise and stop the platform's processes by PID, never by name.

A PID file records the PID *and* the process start time: a PID the kernel has since handed
to another program is not ours, and is never signalled. On Linux the start time compared is the
kernel's, counted from boot: the wall-clock one (psutil's ``create_time``, boot time + that) moves
whenever the clock is stepped, and a step during a run made every live component look gone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class PidRecord:
    component: str
    pid: int
    create_time: float
    argv: list[str]
    started_after_boot: float | None = None  # seconds, from /proc/<pid>/stat; None off Linux

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> PidRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def started_after_boot(pid: int) -> float | None:
    """Seconds from boot to the start of ``pid`` (field 22 of /proc/<pid>/stat, in clock ticks):
    fixed for the life of the process whatever the wall clock does; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        fields = stat[stat.rindex(b")") + 2:].split()  # the command name may hold spaces and ')'
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def same_start(record: PidRecord, proc: psutil.Process) -> bool:
    """Is ``proc`` the process the record was written for, and not a later one given its PID?"""
    if record.started_after_boot is not None:
        now = started_after_boot(proc.pid)
        if now is not None:
            return abs(now - record.started_after_boot) < 0.005  # the same tick
    return abs(proc.create_time() - record.create_time) <= 0.05


def live_process(record: PidRecord | None) -> psutil.Process | None:
    """The process the record names, if it still runs and is the one we started."""
    if record is None:
        return None
    try:
        proc = psutil.Process(record.pid)
        if not same_start(record, proc):
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def start_process(
    component: str,
    argv: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    pid_path: Path,
    cwd: Path | None = None,
) -> PidRecord:
    """Start ``argv`` in its own session (so its children share its process group) and record it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {component}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=cwd,
            start_new_session=True,
        )
    record = PidRecord(component=component, pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(), argv=argv,
                       started_after_boot=started_after_boot(proc.pid))
    record.save(pid_path)
    return record


def stop_process(record: PidRecord, *, timeout_s: float = 10.0) -> bool:
    """SIGTERM the process group we started, SIGKILL it after ``timeout_s``; then its descendants
    that left the group (a Prefect process worker starts each flow run in a session of its own,
    and leaves it running when the worker stops). True if it was running."""
    proc = live_process(record)
    if proc is None:
        return False
    try:  # taken before the signal: once the parent is gone, its children belong to init
        descendants = proc.children(recursive=True)
    except psutil.Error:
        descendants = []
    group = _own_group(record.pid)
    _signal(record.pid, group, signal.SIGCONT)  # a drill may have left it stopped (SIGSTOP)
    _signal(record.pid, group, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except psutil.TimeoutExpired:
        _signal(record.pid, group, signal.SIGKILL)
        try:
            proc.wait(5)
        except psutil.TimeoutExpired:
            pass
    if group:
        _reap_group(record.pid, timeout_s)
    _stop_strays(descendants, timeout_s)
    return True


def _stop_strays(processes: list[psutil.Process], timeout_s: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``, each of ``processes`` still running. psutil
    checks each one's start time, so a PID reused since the list was taken is never signalled."""
    alive = []
    for proc in processes:
        try:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            alive.append(proc)
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(alive, timeout=timeout_s)
    for proc in still:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(still, timeout=5)


def _own_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _signal(pid: int, group: bool, sig: signal.Signals) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_group(pgid: int, timeout_s: float) -> None:
    """Children left in the group (a server's workers) get the same treatment as their parent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)
    _signal(pgid, True, signal.SIGKILL)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str | None:
    """'pid 123 (redis-server)' for the process listening on ``port``, when the OS lets us see it."""
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                try:
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except psutil.Error:
        return None
    return None


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])
