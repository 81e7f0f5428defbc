"""Every Redis client here gives up on a timeout at once and retries a dropped connection once.

redis-py's default (10 retries on timeouts too, with backoff) turned a 0.5 s timeout against a
hung server into ~10 s; these tests count the connections a client opens to a socket that never
answers (or that hangs up), so they judge the policy, not the clock.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import redis

from blocks import SessionStore
from deployments.stack.readiness import redis_ping
from tasks.backup import raw_redis
from tasks.drill_load import SessionRouter
from tasks.health import primary_client
from tasks.redis_retry import RETRIES
from tasks.session_topology import RedisNode


class SilentServer:
    """Accepts connections and reads what it is sent; answers nothing (``hang_up``: closes instead)."""

    def __init__(self, *, hang_up: bool = False) -> None:
        self.hang_up = hang_up
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.hang_up:
                conn.recv(65536)
                conn.close()
            else:
                self._open.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._open:
            conn.close()
        self._sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def hanging_up() -> Iterator[SilentServer]:
    server = SilentServer(hang_up=True)
    yield server
    server.close()


def _store(port: int) -> SessionStore:
    return SessionStore(url=f"redis://127.0.0.1:{port}/0", socket_timeout_s=0.2)


# redis-py's defaults differ by constructor: ``from_url`` clients did not retry timeouts, plain
# ``redis.Redis(host=...)`` ones (the failover's, the health probe's primary) did, 10 times.
SYNC_FACTORIES = {
    "SessionStore.client": lambda port: _store(port).client(),
    "health primary_client": lambda port: primary_client(_store(port), "127.0.0.1", port),
    "RedisNode.client": lambda port: RedisNode("a", "127.0.0.1", port).client(timeout_s=0.2),
}


@pytest.mark.parametrize("factory", SYNC_FACTORIES)
def test_a_hung_session_store_costs_one_timeout_not_eleven(silent: SilentServer, factory: str) -> None:
    with pytest.raises(redis.TimeoutError), SYNC_FACTORIES[factory](silent.port) as client:
        client.lrange("session", 0, -1)
    assert silent.connections == 1


def test_redis_default_would_have_retried_the_timeout(silent: SilentServer) -> None:
    """The premise: without our policy, redis-py reconnects and resends after each timeout."""
    with pytest.raises(redis.TimeoutError), redis.Redis(host="127.0.0.1", port=silent.port, socket_timeout=0.05) as client:
        client.get("k")
    assert silent.connections > 1 + RETRIES


def test_a_dropped_connection_is_retried_once(hanging_up: SilentServer) -> None:
    with pytest.raises(redis.ConnectionError), _store(hanging_up.port).client() as client:
        client.get("k")
    assert hanging_up.connections == 1 + RETRIES


def test_every_sync_client_factory_uses_the_policy() -> None:
    store = _store(1)
    clients = {
        "SessionStore.client": store.client(),
        "raw_redis (backup)": raw_redis(store),
        "health primary_client": primary_client(store, "127.0.0.1", 1),
        "RedisNode.client": RedisNode("a", "127.0.0.1", 1).client(),
    }
    for name, client in clients.items():
        retry = client.get_retry()
        assert retry is not None and retry._retries == RETRIES, name
        assert not any(issubclass(e, redis.TimeoutError) for e in retry._supported_errors), name


def test_readiness_ping_of_a_hung_redis_opens_one_connection(silent: SilentServer) -> None:
    ready = redis_ping("127.0.0.1", silent.port, timeout_s=0.2)
    assert not ready.ready and "TimeoutError" in ready.detail
    assert silent.connections == 1


def test_drill_session_router_sees_a_hung_primary_after_one_timeout(silent: SilentServer) -> None:
    actions: list[object] = []
    router = SessionRouter(RedisNode("a", "127.0.0.1", silent.port), RedisNode("b", "127.0.0.1", 1),
                           mode="async", failover=False, on_action=actions.append, timeout_s=0.2)

    async def read() -> list[dict]:
        try:
            return await router.history("session", 3)
        finally:
            await router.close()

    assert asyncio.run(read()) == []
    assert silent.connections == 1
    assert router._first_failure is not None  # the failure was seen, so failover can follow
