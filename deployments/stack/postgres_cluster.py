"""The Prefect server's PostgreSQL: a cluster of its own in the state dir, or a server the user names.

The launcher's cluster is created once with ``initdb`` under ``state_dir/data/postgresql`` and run
by ``postgres`` in the foreground (so its PID file is the postmaster), bound to 127.0.0.1 on
``postgres_port`` with its unix socket inside the state dir. PostgreSQL refuses to run as root, so
as root every PostgreSQL program runs as the Debian package's ``postgres`` user (``setpriv``), and
the cluster's directories belong to that user. Password authentication (scram-sha-256) on TCP: the
generated password is kept in ``state_dir/config/postgres-password`` (0600, owner only).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from deployments.settings import PlatformSettings
from deployments.stack.errors import DatabaseUnreachableError, StackError

ROLE = "prefect"
DATABASE = "prefect"
SERVICE_USER = "postgres"  # created by the Debian postgresql package
PG_ROOT = Path("/usr/lib/postgresql")


def pg_bin(name: str) -> str:
    """A PostgreSQL server program (not on PATH in Debian): the newest installed version's."""
    versions = sorted((p for p in PG_ROOT.glob("*/bin") if (p / name).exists()), key=lambda p: int(p.parent.name))
    if not versions:
        return name  # preflight reports it missing, naming the package
    return str(versions[-1] / name)


def run_as_prefix() -> list[str]:
    """As root, run as the postgres user; as anyone else, as ourselves."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError as exc:
        raise StackError(f"postgres: running as root needs the `{SERVICE_USER}` user (Debian package postgresql)") from exc
    return ["setpriv", f"--reuid={SERVICE_USER}", f"--regid={SERVICE_USER}", "--init-groups", "--"]


def cluster_password(settings: PlatformSettings) -> str:
    """The generated password of the launcher's cluster (created on first use, 0600)."""
    path = settings.postgres_password_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(secrets.token_urlsafe(24))
        tmp.replace(path)
    return path.read_text().strip()


def postgres_argv(settings: PlatformSettings) -> list[str]:
    return [
        *run_as_prefix(), pg_bin("postgres"), "-D", str(settings.postgres_data_dir),
        "-h", settings.host, "-p", str(settings.postgres_port), "-k", str(settings.postgres_socket_dir),
        "-c", "max_connections=200", "-c", "fsync=on",
    ]


def _owned_by_service_user(*paths: Path) -> None:
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam(SERVICE_USER)
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)


def _traversable(settings: PlatformSettings, path: Path) -> None:
    """The postgres user must reach ``path``: give others search (x) on the state dir's folders."""
    if os.geteuid() != 0:
        return
    for folder in [settings.state_dir, *[p for p in path.parents if settings.state_dir in p.parents]]:
        folder.chmod(folder.stat().st_mode | 0o001)
    probe = settings.state_dir
    while probe != probe.parent:
        if not probe.stat().st_mode & 0o001:
            raise StackError(
                f"postgres: the `{SERVICE_USER}` user cannot enter {probe} (state_dir {settings.state_dir} must be "
                "reachable by it); choose another LLMR_STATE_DIR or chmod o+x that folder"
            )
        probe = probe.parent


def ensure_cluster(settings: PlatformSettings) -> None:
    """Create the cluster and its ``prefect`` database once; an existing cluster is kept as it is."""
    data, sockets = settings.postgres_data_dir, settings.postgres_socket_dir
    for folder in (data, sockets):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        _owned_by_service_user(folder)
    _traversable(settings, data)
    _traversable(settings, sockets)
    if (data / "PG_VERSION").exists():
        return
    pwfile = sockets / "initdb-password"
    pwfile.write_text(cluster_password(settings))
    pwfile.chmod(0o600)
    _owned_by_service_user(pwfile)
    try:
        _run([*run_as_prefix(), pg_bin("initdb"), "-D", str(data), "-U", ROLE, f"--pwfile={pwfile}", "-E", "UTF8",
              "--locale=C", "--auth-host=scram-sha-256", "--auth-local=peer"], "initdb")
    finally:
        pwfile.unlink(missing_ok=True)
    _run([*run_as_prefix(), pg_bin("postgres"), "--single", "-D", str(data), "postgres"], "create database",
         stdin=f"CREATE DATABASE {DATABASE} OWNER {ROLE};\n")


def _run(argv: list[str], what: str, stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, cwd="/")
    if proc.returncode != 0:
        raise StackError(f"postgres: {what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")


def check_database_url(url: str, setting: str, *, timeout_s: float = 5.0) -> None:
    """Connect once to the PostgreSQL server ``url`` names; a clear error naming ``setting`` if not."""
    import asyncpg

    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 5432}{parts.path}"
    dsn = "postgresql://" + url.split("://", 1)[1]

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnreachableError(setting, where, f"{exc.__class__.__name__}: {exc}") from exc
