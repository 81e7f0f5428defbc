"""CPU/memory by PID record (this very test process stands in for a platform process), GPU parsing."""

import os
import sys

import psutil

from deployments.stack.process_control import PidRecord
from tasks.resource_usage import component_for_process, parse_nvidia_smi, sample_gpus, sample_processes


def test_processes_are_measured_by_pid_record_and_stale_records_are_missing(tmp_path) -> None:
    me = psutil.Process(os.getpid())
    PidRecord("redis-region-a", os.getpid(), me.create_time(), [sys.executable]).save(tmp_path / "redis-region-a.pid")
    # a PID that exists but was started at another time is not ours
    PidRecord("llm-region-a", os.getpid(), me.create_time() - 1000, ["x"]).save(tmp_path / "llm-region-a.pid")
    usage, missing = sample_processes(tmp_path, interval_s=0.05)
    assert [(u.component, u.process, u.pid) for u in usage] == [("sessions-region-a", "redis-region-a", os.getpid())]
    assert usage[0].memory_rss_bytes > 1_000_000 and usage[0].cpu_seconds_total > 0
    assert missing == ["llm-region-a"]


def test_component_names_join_probe_rows() -> None:
    assert component_for_process("s3-region-b") == "storage-region-b"
    assert component_for_process("prefect-server") == "prefect-api"
    assert component_for_process("llm-region-a") == "llm-region-a"


def test_nvidia_smi_output_and_absence() -> None:
    (gpu,) = parse_nvidia_smi("0, NVIDIA L4, 37, 1024, 23034\n")
    assert gpu.utilization_percent == 37 and gpu.memory_used_bytes == 1024 * 2**20
    present, detail, gpus = sample_gpus("no-such-nvidia-smi")
    assert not present and gpus == [] and detail == "absent: no no-such-nvidia-smi on PATH"
