"""Runs ``prefect server start`` with two SQLite lock fixes: a bounded busy timeout, and
automation triggers that take the write lock before they read.

    python -m deployments.stack.prefect_server --sqlite-busy-timeout-ms 10000 server start --host 127.0.0.1

Why: Prefect 3.8.8 sets ``PRAGMA busy_timeout = 60000`` on every SQLite connection of its server.
In one process that can stall the whole API for those 60 s: garbage-collecting an old exception's
traceback frees a sqlite3 cursor on the event-loop thread, which needs the cursor's connection
mutex; an aiosqlite thread holds that mutex while it waits in the busy handler for the WAL write
lock; and the write lock belongs to a transaction of a coroutine on the same, now blocked, loop.
Nothing moves until the waiting thread gives up (diagnosed with gdb and /proc/locks, 2026-12-07).
A shorter timeout ends that wait sooner. The write that fails is the one that fails after 60 s
anyway. A legitimate wait this long would need a write transaction held for seconds by a running
loop, which a single server process does not do.

In the foreground with one worker, ``prefect server start`` runs uvicorn and the services in this
very process, so patching Prefect's classes here reaches every connection the server opens. Both
patches are written against Prefect 3.8.8 (pinned) and tested in tests/unit/test_prefect_server_start.py.
PostgreSQL servers are untouched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from typing import Any

DEFAULT_BUSY_TIMEOUT_MS = 10_000


def bound_sqlite_busy_timeout(timeout_ms: int) -> None:
    """Make every SQLite connection the Prefect server opens from now on wait at most ``timeout_ms``
    for a lock, instead of Prefect's 60 s. Calling it again replaces the earlier bound."""
    if timeout_ms < 1:
        raise ValueError(f"sqlite busy timeout must be at least 1 ms, got {timeout_ms}")
    from prefect.server.database.configurations import AioSqliteConfiguration

    prefect_setup = getattr(AioSqliteConfiguration.setup_sqlite, "__wrapped_prefect__", AioSqliteConfiguration.setup_sqlite)

    def setup_sqlite(self: Any, conn: Any, record: Any) -> None:
        prefect_setup(self, conn, record)  # Prefect's PRAGMAs first: WAL, foreign keys, its 60 s
        cursor = conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(timeout_ms)};")
        cursor.close()

    setup_sqlite.__wrapped_prefect__ = prefect_setup  # type: ignore[attr-defined]
    AioSqliteConfiguration.setup_sqlite = setup_sqlite  # type: ignore[method-assign]


def immediate_trigger_transactions() -> None:
    """Open the triggers service's write transactions as ``BEGIN IMMEDIATE`` on SQLite.

    Prefect opens them DEFERRED: each reads the automation's bucket, then inserts into
    ``automation_bucket``. SQLite cannot upgrade a read transaction to a write one while another
    connection writes, and fails such an upgrade at once ("database is locked") instead of waiting.
    The service retries a message four times, then drops it to its dead-letter queue, so the
    zombie-flow automation lost heartbeats (82 of 96 lock errors in one test session's server log).
    IMMEDIATE takes the write lock first and waits for it like any other writer. The service's
    other sessions run statement by statement, and each statement already waits. On PostgreSQL the
    flag means nothing (Prefect ignores it there).
    """
    from prefect.server.database import provide_database_interface
    from prefect.server.events import triggers

    @asynccontextmanager
    async def automations_session(begin_transaction: bool = False) -> AsyncGenerator[Any, None]:
        db = provide_database_interface()
        async with db.session_context(begin_transaction=begin_transaction, with_for_update=begin_transaction) as session:
            yield session

    triggers.automations_session = automations_session  # type: ignore[assignment]


def parse_args(argv: Sequence[str]) -> tuple[int, list[str]]:
    """Our option, then Prefect's command line untouched (``--help`` included: it is Prefect's)."""
    parser = argparse.ArgumentParser(prog="python -m deployments.stack.prefect_server", add_help=False,
                                     allow_abbrev=False)
    parser.add_argument("--sqlite-busy-timeout-ms", type=int, default=DEFAULT_BUSY_TIMEOUT_MS,
                        help=f"how long a server connection waits for an SQLite lock (default {DEFAULT_BUSY_TIMEOUT_MS})")
    ours, prefect_argv = parser.parse_known_args(list(argv))
    if ours.sqlite_busy_timeout_ms < 1:
        parser.error(f"--sqlite-busy-timeout-ms must be at least 1, got {ours.sqlite_busy_timeout_ms}")
    if not prefect_argv:
        parser.error("give the Prefect command to run, e.g. `server start --host 127.0.0.1`")
    return ours.sqlite_busy_timeout_ms, prefect_argv


def main(argv: Sequence[str] | None = None) -> None:
    timeout_ms, prefect_argv = parse_args(sys.argv[1:] if argv is None else argv)
    bound_sqlite_busy_timeout(timeout_ms)
    immediate_trigger_transactions()
    print(f"llm-resilience: SQLite connections of this server wait at most {timeout_ms} ms for a lock "
          "(Prefect's own: 60000 ms), and automation triggers take the write lock before they read "
          "(no effect on PostgreSQL)", file=sys.stderr, flush=True)
    from prefect.cli import app

    sys.argv = ["prefect", *prefect_argv]
    sys.exit(app())


if __name__ == "__main__":
    main()
