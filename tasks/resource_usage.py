"""CPU and memory of the platform's processes (by the launcher's PID files), GPU by nvidia-smi.

Processes are found through the launcher's PID records, never by name, and a record whose PID
now belongs to another program (different start time) is ignored. CPU is measured over one
short interval for all processes at once. GPU figures come from `nvidia-smi`; without it the
report says the GPU is absent rather than inventing zeros.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import psutil
from pydantic import BaseModel, Field

from deployments.stack.process_control import PidRecord, live_process

# Launcher component -> the health component it serves, so a row joins probe and resource figures.
PROCESS_TO_COMPONENT_PREFIX = {"s3-": "storage-", "redis-": "sessions-"}
PROCESS_TO_COMPONENT = {"prefect-server": "prefect-api"}


class ProcessUsage(BaseModel):
    component: str
    process: str
    pid: int
    cpu_percent: float
    memory_rss_bytes: int
    cpu_seconds_total: float


class GpuUsage(BaseModel):
    index: int
    name: str
    utilization_percent: float
    memory_used_bytes: int
    memory_total_bytes: int


class ResourceReport(BaseModel):
    processes: list[ProcessUsage] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list, description="PID files whose process is not running.")
    gpu_present: bool = False
    gpu_detail: str = ""
    gpus: list[GpuUsage] = Field(default_factory=list)


def component_for_process(process: str) -> str:
    if process in PROCESS_TO_COMPONENT:
        return PROCESS_TO_COMPONENT[process]
    for prefix, replacement in PROCESS_TO_COMPONENT_PREFIX.items():
        if process.startswith(prefix):
            return replacement + process[len(prefix):]
    return process


def _family(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def sample_processes(run_dir: Path, interval_s: float = 0.5) -> tuple[list[ProcessUsage], list[str]]:
    """Usage of every process with a PID file in ``run_dir`` (children included)."""
    live: dict[str, tuple[PidRecord, list[psutil.Process]]] = {}
    missing: list[str] = []
    for pid_file in sorted(run_dir.glob("*.pid")):
        record = PidRecord.load(pid_file)
        proc = live_process(record)
        if record is None or proc is None:
            missing.append(pid_file.stem)
            continue
        family = _family(proc)
        for p in family:
            try:
                p.cpu_percent(None)  # primes the counter; the second call measures the interval
            except psutil.Error:
                pass
        live[record.component] = (record, family)
    if live:
        time.sleep(interval_s)
    out: list[ProcessUsage] = []
    for name, (record, family) in live.items():
        cpu = rss = cpu_total = 0.0
        for p in family:
            try:
                with p.oneshot():
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
                    times = p.cpu_times()
                    cpu_total += times.user + times.system
            except psutil.Error:
                continue
        out.append(ProcessUsage(component=component_for_process(name), process=name, pid=record.pid,
                                cpu_percent=round(cpu, 1), memory_rss_bytes=int(rss),
                                cpu_seconds_total=round(cpu_total, 3)))
    return out, missing


NVIDIA_QUERY = ["--query-gpu=index,name,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"]


def parse_nvidia_smi(text: str) -> list[GpuUsage]:
    """`index, name, util %, used MiB, total MiB` lines -> GpuUsage."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        index, name, util, used, total = parts
        gpus.append(GpuUsage(index=int(index), name=name, utilization_percent=float(util),
                             memory_used_bytes=int(float(used) * 2**20), memory_total_bytes=int(float(total) * 2**20)))
    return gpus


def sample_gpus(binary: str = "nvidia-smi") -> tuple[bool, str, list[GpuUsage]]:
    path = shutil.which(binary)
    if path is None:
        return False, f"absent: no {binary} on PATH", []
    try:
        done = subprocess.run([path, *NVIDIA_QUERY], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"absent: {binary} failed: {exc}", []
    if done.returncode != 0:
        return False, f"absent: {binary} exited {done.returncode}: {done.stderr.strip()[:200]}", []
    gpus = parse_nvidia_smi(done.stdout)
    return bool(gpus), f"{len(gpus)} GPU(s)" if gpus else "absent: nvidia-smi lists no GPU", gpus


def sample_resources(run_dir: Path) -> ResourceReport:
    processes, missing = sample_processes(run_dir)
    present, detail, gpus = sample_gpus()
    return ResourceReport(processes=processes, missing=missing, gpu_present=present, gpu_detail=detail, gpus=gpus)
