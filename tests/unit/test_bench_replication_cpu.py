"""The replication benchmark's CPU accounting: where each round's CPU went, servers included."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from bench.replication.project_run import server_cpu
from bench.replication.run import cpu_line


def test_server_cpu_counts_a_server_s_child_processes() -> None:
    # Prefect's server runs its API in a child process: a parent that only waits must still be charged.
    child = "import time; sum(i * i for i in range(3_000_000)); time.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"])
    ps = psutil.Process(parent.pid)
    try:
        deadline = time.monotonic() + 60
        kids: list[psutil.Process] = []
        while time.monotonic() < deadline:  # until the child has burnt its CPU and sleeps
            kids = ps.children(recursive=True)
            if kids and kids[0].status() == psutil.STATUS_SLEEPING and sum(kids[0].cpu_times()[:2]) > 0.05:
                break
            time.sleep(0.05)
        child_cpu = sum(kids[0].cpu_times()[:2])
        parent_cpu = sum(ps.cpu_times()[:2])
        assert server_cpu({"srv": ps})["srv"] >= parent_cpu + child_cpu > parent_cpu
    finally:
        for p in [*ps.children(recursive=True), ps]:
            p.kill()
        parent.wait()


def test_cpu_line_names_the_tool_and_every_server() -> None:
    line = cpu_line(2.5, {"moto-src": 0.61, "moto-dst": 6.1, "prefect": 0.26})
    assert line == "tool  2.50  moto-src  0.61  moto-dst  6.10  prefect  0.26"
