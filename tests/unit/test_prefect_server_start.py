"""The platform's Prefect server bounds SQLite lock waits and opens trigger transactions IMMEDIATE
(see deployments/stack/prefect_server.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import prefect.cli
import pytest
import sqlalchemy as sa
from prefect.server.database.configurations import AioSqliteConfiguration

from deployments.settings import PlatformSettings
from deployments.stack.components import build_components
from deployments.stack.prefect_server import (
    DEFAULT_BUSY_TIMEOUT_MS,
    bound_sqlite_busy_timeout,
    immediate_trigger_transactions,
    main,
    parse_args,
)


@pytest.fixture
def restore_prefect_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the test patches, Prefect's own code comes back afterwards."""
    from prefect.server.events import triggers

    monkeypatch.setattr(AioSqliteConfiguration, "setup_sqlite", AioSqliteConfiguration.setup_sqlite)
    monkeypatch.setattr(triggers, "automations_session", triggers.automations_session)


def _pragmas(db: Path) -> tuple[int, str]:
    return asyncio.run(_read_pragmas(db))


async def _read_pragmas(db: Path) -> tuple[int, str]:
    config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{db}")
    engine = await config.engine()
    try:
        async with engine.connect() as conn:
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one()
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
    finally:
        await engine.dispose()
    return busy, journal


def test_server_connections_get_the_bound_and_keep_prefects_other_pragmas(
    tmp_path: Path, restore_prefect_setup: None
) -> None:
    assert _pragmas(tmp_path / "before.db")[0] == 60_000  # Prefect's own, the one we bound
    bound_sqlite_busy_timeout(7_000)
    busy, journal = _pragmas(tmp_path / "after.db")
    assert busy == 7_000
    assert journal == "wal"  # Prefect's setup still ran first


def test_a_second_bound_replaces_the_first(tmp_path: Path, restore_prefect_setup: None) -> None:
    bound_sqlite_busy_timeout(7_000)
    bound_sqlite_busy_timeout(3_000)
    assert _pragmas(tmp_path / "x.db")[0] == 3_000


def test_a_write_on_a_locked_database_gives_up_with_database_is_locked(tmp_path: Path, restore_prefect_setup: None) -> None:
    """Another connection holds the write lock: a server write gives up with 'database is locked'."""
    db = tmp_path / "locked.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    bound_sqlite_busy_timeout(200)

    async def server_write() -> None:
        engine = await AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{db}").engine()
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        finally:
            await engine.dispose()

    try:
        with pytest.raises(Exception, match="database is locked"):
            asyncio.run(server_write())
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_zero_is_refused(restore_prefect_setup: None) -> None:
    with pytest.raises(ValueError, match="at least 1 ms"):
        bound_sqlite_busy_timeout(0)


def test_arguments_split_into_ours_and_prefects() -> None:
    assert parse_args(["--sqlite-busy-timeout-ms", "2500", "server", "start", "--port", "4200"]) == (
        2500, ["server", "start", "--port", "4200"])
    assert parse_args(["server", "start"]) == (DEFAULT_BUSY_TIMEOUT_MS, ["server", "start"])
    assert parse_args(["server", "start", "--help"]) == (DEFAULT_BUSY_TIMEOUT_MS, ["server", "start", "--help"])
    assert parse_args(["server", "start", "--sqlite", "x"])[1] == ["server", "start", "--sqlite", "x"]  # no abbreviations


@pytest.mark.parametrize("argv, message", [
    (["--sqlite-busy-timeout-ms", "0", "server", "start"], "at least 1"),
    (["--sqlite-busy-timeout-ms", "ten", "server", "start"], "invalid int value"),
    (["--sqlite-busy-timeout-ms", "100"], "give the Prefect command"),
])
def test_bad_arguments_name_the_option(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_platform_starts_its_server_with_the_configured_bound(tmp_path: Path) -> None:
    settings = PlatformSettings(state_dir=tmp_path, sqlite_busy_timeout_s=2.5)
    server = next(c for c in build_components(settings) if c.name == "prefect-server")
    assert server.argv[:3] == [sys.executable, "-m", "deployments.stack.prefect_server"]
    assert server.argv[3:5] == ["--sqlite-busy-timeout-ms", "2500"]
    assert server.argv[5:7] == ["server", "start"]


def test_main_bounds_the_timeout_before_prefects_cli_runs(
    tmp_path: Path, restore_prefect_setup: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.server.events import triggers

    prefects_session = triggers.automations_session
    seen: dict[str, object] = {}

    def prefect_cli() -> int:  # stands in for Prefect's CLI, which would start a server
        seen["argv"] = list(sys.argv)
        seen["busy"] = _pragmas(tmp_path / "cli.db")[0]
        seen["triggers patched"] = triggers.automations_session is not prefects_session
        return 0

    monkeypatch.setattr(prefect.cli, "app", prefect_cli)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as exit_info:
        main(["--sqlite-busy-timeout-ms", "4321", "server", "start", "--port", "4999"])
    assert exit_info.value.code == 0
    assert seen == {"argv": ["prefect", "server", "start", "--port", "4999"], "busy": 4321, "triggers patched": True}


@pytest.fixture
def sqlite_server_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_prefect_setup: None) -> Path:
    """Prefect's database interface on a fresh SQLite file (Prefect's own code restored after)."""
    from prefect.server.database import dependencies

    db = tmp_path / "server.db"
    monkeypatch.setattr(dependencies, "MODELS_DEPENDENCIES", {
        "database_config": AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{db}"),
        "query_components": None, "orm": None, "interface_class": None,
    })
    return db


def _other_writer_is_locked_out(db: Path) -> bool:
    """While the triggers service's write transaction is open, can another connection start writing?"""
    from prefect.server.database import provide_database_interface
    from prefect.server.events import triggers

    async def probe() -> bool:
        try:
            async with triggers.automations_session(begin_transaction=True) as session:
                await session.execute(sa.text("SELECT 1"))  # the first statement sends the BEGIN
                other = sqlite3.connect(db, timeout=0, isolation_level=None)
                try:
                    other.execute("BEGIN IMMEDIATE")
                    other.execute("ROLLBACK")
                    return False
                except sqlite3.OperationalError as exc:
                    assert "database is locked" in str(exc)
                    return True
                finally:
                    other.close()
        finally:
            await (await provide_database_interface().engine()).dispose()

    return asyncio.run(probe())


def test_prefects_trigger_transactions_are_deferred(sqlite_server_database: Path) -> None:
    """The behaviour the patch changes: a read-then-write transaction that holds no write lock."""
    assert not _other_writer_is_locked_out(sqlite_server_database)


def test_trigger_transactions_take_the_write_lock_first(sqlite_server_database: Path) -> None:
    immediate_trigger_transactions()
    assert _other_writer_is_locked_out(sqlite_server_database)
