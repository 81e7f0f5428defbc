import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from deployments.stack.process_control import (
    PidRecord,
    live_process,
    log_tail,
    port_holder,
    port_is_free,
    start_process,
    started_after_boot,
    stop_process,
)


def _start(tmp_path: Path, argv: list[str]) -> PidRecord:
    return start_process("sleeper", argv, env={}, log_path=tmp_path / "x.log", pid_path=tmp_path / "x.pid")


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[PidRecord]:
    """A process of ours that outlives the test unless the test stops it."""
    record = _start(tmp_path, ["sleep", "30"])
    yield record
    stop_process(record)


def test_pid_file_round_trips_and_names_a_live_process(sleeper: PidRecord, tmp_path: Path) -> None:
    assert PidRecord.load(tmp_path / "x.pid") == sleeper
    assert live_process(sleeper) is not None
    stop_process(sleeper)
    assert live_process(sleeper) is None


def test_a_reused_pid_is_not_mistaken_for_ours(sleeper: PidRecord) -> None:
    impostor = replace(sleeper, create_time=sleeper.create_time - 1000,
                       started_after_boot=sleeper.started_after_boot and sleeper.started_after_boot - 1000)
    assert live_process(impostor) is None
    assert stop_process(impostor) is False  # never signals a process it did not start
    assert live_process(sleeper) is not None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="boot-relative start times come from Linux /proc")
def test_a_wall_clock_step_does_not_make_a_live_process_look_gone(sleeper: PidRecord, tmp_path: Path) -> None:
    """psutil's create_time is boot time + the kernel's start, and boot time is derived from the
    wall clock: a clock step moves it by whole seconds. The record's kernel start still matches."""
    assert sleeper.started_after_boot is not None
    assert sleeper.started_after_boot == started_after_boot(sleeper.pid)
    stepped = replace(sleeper, create_time=sleeper.create_time - 1.0)  # as read before a 1 s step
    assert live_process(stepped) is not None
    assert PidRecord.load(tmp_path / "x.pid") == sleeper
    stop_process(sleeper)
    assert live_process(sleeper) is None


def test_a_record_without_a_boot_relative_start_falls_back_to_create_time(sleeper: PidRecord) -> None:
    old_format = replace(sleeper, started_after_boot=None)
    assert live_process(old_format) is not None
    assert live_process(replace(old_format, create_time=sleeper.create_time - 1.0)) is None


def test_stop_takes_the_children_of_the_process_group_too(tmp_path: Path) -> None:
    record = _start(tmp_path, ["sh", "-c", "sleep 60 & sleep 60 & wait"])
    deadline = time.time() + 5
    while len(psutil.Process(record.pid).children()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    children = psutil.Process(record.pid).children()
    assert len(children) == 2
    assert stop_process(record) is True
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_stop_takes_descendants_that_left_the_group(tmp_path: Path) -> None:
    """A Prefect process worker starts each flow run in a session of its own; stopping the
    worker must not leave those runs behind, orphaned."""
    script = ("import subprocess, sys, time; "
              "subprocess.Popen(['sleep', '60'], start_new_session=True); "
              "subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'], start_new_session=True); "
              "time.sleep(60)")
    record = _start(tmp_path, [sys.executable, "-c", script])
    deadline = time.time() + 10
    while len(psutil.Process(record.pid).children()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    strays = psutil.Process(record.pid).children()
    try:
        assert len(strays) == 2 and all(os.getpgid(c.pid) != record.pid for c in strays)  # outside the group
        assert stop_process(record, timeout_s=1) is True
        for child in strays:  # one went on SIGTERM, the one ignoring it on SIGKILL
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        stop_process(record)
        for child in strays:
            if child.is_running():
                child.kill()


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    record = _start(tmp_path, [sys.executable, "-c", script])
    deadline = time.time() + 10
    while "up" not in log_tail(tmp_path / "x.log") and time.time() < deadline:
        time.sleep(0.05)
    assert stop_process(record, timeout_s=0.5) is True
    assert live_process(record) is None


def test_output_goes_to_the_log_file(tmp_path: Path) -> None:
    record = _start(tmp_path, ["sh", "-c", "echo hello-from-component; sleep 30"])
    try:
        deadline = time.time() + 5
        while "hello-from-component" not in log_tail(tmp_path / "x.log") and time.time() < deadline:
            time.sleep(0.05)
        assert "hello-from-component" in log_tail(tmp_path / "x.log")
    finally:
        stop_process(record)


def test_busy_port_is_seen_with_its_holder() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_is_free("127.0.0.1", port) is False
        holder = port_holder(port)
        assert holder is not None and holder.startswith("pid ")
    assert port_is_free("127.0.0.1", port) is True


def test_log_tail_of_missing_file() -> None:
    assert log_tail(Path("/nonexistent/llmr.log")) == "(no log written)"


@pytest.mark.parametrize("text", ["", "not json", '{"pid": 1}'])
def test_a_damaged_pid_file_reads_as_no_record(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.pid"
    path.write_text(text)
    assert PidRecord.load(path) is None
