"""Stop a platform when its owner dies or its time is up, so no test run leaves servers behind.

    python -m deployments.stack.watchdog --state-dir DIR --owner-pid PID --max-seconds N

The test fixtures start one beside the session's platform; drills can use it as a lease.
"""

from __future__ import annotations

import argparse
import time

import psutil

from deployments.settings import load_effective_settings
from deployments.stack.launcher import Launcher


def watch(state_dir: str, owner_pid: int, max_seconds: float, poll_s: float = 1.0) -> str:
    deadline = time.monotonic() + max_seconds
    owner = psutil.Process(owner_pid)
    created = owner.create_time()
    while time.monotonic() < deadline:
        try:
            if not owner.is_running() or owner.create_time() != created or owner.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.Error:
            break
        time.sleep(poll_s)
    reason = "owner gone" if time.monotonic() < deadline else f"lease of {max_seconds:g} s expired"
    Launcher(load_effective_settings(state_dir)).down()
    return reason


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--owner-pid", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    args = parser.parse_args()
    reason = watch(args.state_dir, args.owner_pid, args.max_seconds)
    print(f"watchdog: stopped the platform in {args.state_dir} ({reason})", flush=True)


if __name__ == "__main__":
    main()
