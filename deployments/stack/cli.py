"""`python -m deployments.stack up|down|status|env` (the Makefile's stack-* targets)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from pydantic import ValidationError

from deployments.stack.errors import StackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmr-stack", description="The local two-region LLM platform.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every component that is not running, then wait until ready")
    up.add_argument("--only", nargs="+", metavar="COMPONENT", help="start just these components")
    down = sub.add_parser("down", help="stop the components this launcher started, by PID")
    down.add_argument("--only", nargs="+", metavar="COMPONENT")
    sub.add_parser("status", help="component, URL, PID and health of each component")
    sub.add_parser("env", help="print `export` lines that point Prefect at this platform")
    args = parser.parse_args(argv)

    try:
        from deployments.settings import load_settings

        settings = load_settings()
        if args.command == "env":
            for key, value in settings.prefect_env().items():
                print(f"export {key}={shlex.quote(value)}")
            return 0

        from deployments.stack.launcher import Launcher
        from tasks.health_report import render_text_table

        launcher = Launcher(settings, progress=lambda msg: print(f"  {msg}", flush=True))
        if args.command == "up":
            t0 = time.monotonic()
            started = launcher.up(args.only)
            print(f"platform up in {time.monotonic() - t0:.1f} s; started: {', '.join(started) or 'nothing (all running)'}")
            print(render_text_table([s.row() for s in launcher.status()]))
            print(f"\nPrefect UI: {settings.prefect_ui_url}\nLogs: {settings.log_dir}")
        elif args.command == "down":
            stopped = launcher.down(args.only)
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        elif args.command == "status":
            statuses = launcher.status()
            print(render_text_table([s.row() for s in statuses]))
            return 0 if all(s.healthy for s in statuses) else 1
    except ValidationError as exc:
        print(f"invalid settings (LLMR_* environment variables):\n{exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
