"""Undo a process fault at a deadline, even if the drill that injected it is gone.

    python -m deployments.stack.fault_lease --state-dir DIR --component NAME --action resume|restart --at UNIX_TIME

A drill starts one of these, detached, before it stops or kills a component; its rollback
stops the lease by PID. If the drill is cancelled or SIGKILLed first, the lease wakes at its
deadline and resumes (SIGCONT) or restarts the component itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import time


def expire(state_dir: str, component: str, action: str) -> str:
    # Imported here, not at the top: a lease starts at the moment of the fault, and importing the
    # launcher then would take CPU from the very failover the drill is measuring.
    from deployments.settings import load_effective_settings
    from deployments.stack.launcher import Launcher
    from deployments.stack.process_control import live_process

    launcher = Launcher(load_effective_settings(state_dir))
    if action == "resume":
        proc = live_process(launcher.record(component))
        if proc is None:
            return f"{component} is not running; nothing to resume"
        os.killpg(proc.pid, signal.SIGCONT) if os.getpgid(proc.pid) == proc.pid else os.kill(proc.pid, signal.SIGCONT)
        return f"resumed {component} (pid {proc.pid})"
    started = launcher.up([component], provision=True)
    return f"restarted {component}" if started else f"{component} was already running"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--component", required=True)
    parser.add_argument("--action", choices=["resume", "restart"], required=True)
    parser.add_argument("--at", type=float, required=True, help="Unix time the fault must be undone by")
    args = parser.parse_args()
    time.sleep(max(0.0, args.at - time.time()))
    print(f"fault lease expired: {expire(args.state_dir, args.component, args.action)}", flush=True)


if __name__ == "__main__":
    main()
