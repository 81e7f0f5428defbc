"""Simulated users chatting through the gateway while a drill breaks things.

Each user holds one conversation whose history lives in the session store (Redis). A turn reads
the history from the current primary store, sends it with a new message through the gateway,
and on success appends the exchange to the store. The turn is *acknowledged* only when that
write succeeded: in ``async`` mode when the primary took it, in ``sync`` mode when ``WAIT``
says the replica has it too. Every acknowledged turn is recorded here, so after a regional
failover the drill can count which of them the new primary is missing (lost turns).

Requests go out at a steady rate (open loop), each from a user with no turn in flight; a tick
that finds every user busy is counted as skipped, since a real user waits for an answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import httpx
import redis.asyncio as aioredis

from tasks.drill_experiment import LoadProfile
from tasks.redis_retry import bounded_async_retry
from tasks.session_topology import RedisNode, promote

TOPICS = ["tides", "bread", "owls", "maps", "rain", "chess", "bees", "clocks", "salt", "kites"]


@dataclass
class TurnRecord:
    user: int
    turn: int
    sent_at: float  # unix time
    latency_ms: float
    status: int | None  # None: no HTTP answer (connection error, client timeout)
    backend: str | None
    error: str | None = None
    ack: str = "none"  # none | replicated | primary (async write, or sync with no replica left)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def done_at(self) -> float:
        return self.sent_at + self.latency_ms / 1000


@dataclass
class SessionAction:
    at: float
    action: str
    detail: str


class SessionRouter:
    """The application's view of which session store is primary, with Sentinel-like failover."""

    def __init__(self, primary: RedisNode, secondary: RedisNode, *, mode: str, failover: bool,
                 on_action: Callable[[SessionAction], None], timeout_s: float = 0.5, down_after_s: float = 1.0) -> None:
        self.nodes = {primary.name: primary, secondary.name: secondary}
        self.primary, self.secondary = primary, secondary
        self.mode, self.failover, self.on_action = mode, failover, on_action
        self.timeout_s, self.down_after_s = timeout_s, down_after_s
        self.failed_over = False
        self._first_failure: float | None = None
        self._clients: dict[str, aioredis.Redis] = {}
        self._promoting = asyncio.Lock()

    def _client(self, node: RedisNode) -> aioredis.Redis:
        if node.name not in self._clients:
            self._clients[node.name] = aioredis.Redis(
                host=node.host, port=node.port, socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s, decode_responses=True, retry=bounded_async_retry())
        return self._clients[node.name]

    async def history(self, key: str, turns: int) -> list[dict]:
        if turns == 0:
            return []
        try:
            raw = await self._client(self.primary).lrange(key, -turns, -1)
        except (aioredis.RedisError, OSError):
            await self._primary_failed()
            return []
        self._first_failure = None
        return [json.loads(item) for item in raw]

    async def append(self, key: str, entry: dict) -> str:
        """Write one turn; returns how it was acknowledged (``none`` if it was not)."""
        node = self.primary
        client = self._client(node)
        try:
            await client.rpush(key, json.dumps(entry))
            await client.expire(key, 86400)
            if self.mode == "async":
                ack = "primary"
            else:
                replicas = await client.execute_command("WAIT", 1, int(self.timeout_s * 1000))
                ack = "replicated" if replicas >= 1 else ("primary" if self.failed_over else "none")
        except (aioredis.RedisError, OSError):
            await self._primary_failed()
            return "none"
        self._first_failure = None
        return ack

    async def _primary_failed(self) -> None:
        now = time.time()
        self._first_failure = self._first_failure or now
        if not self.failover or self.failed_over or now - self._first_failure < self.down_after_s:
            return
        async with self._promoting:
            if self.failed_over:
                return
            self.on_action(SessionAction(now, "session-store-down", f"{self.primary.name} failing for "
                                         f"{now - self._first_failure:.1f} s"))
            await asyncio.to_thread(promote, self.secondary)
            self.primary, self.secondary = self.secondary, self.primary
            self.failed_over = True
            self.on_action(SessionAction(time.time(), "session-failover", f"promoted {self.primary.name}"))

    async def stored_turns(self, key: str) -> set[int] | None:
        try:
            raw = await self._client(self.primary).lrange(key, 0, -1)
        except (aioredis.RedisError, OSError):
            return None
        return {json.loads(item)["turn"] for item in raw}

    async def close(self) -> None:
        """Close every client: they belong to the event loop that made them."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


@dataclass
class LoadGenerator:
    """Runs in its own thread and event loop; the drill's main thread reads ``records``."""

    gateway_url: str
    model: str
    profile: LoadProfile
    router_factory: Callable[[], SessionRouter]
    key_prefix: str
    backend_header: str = "x-llmr-backend"
    records: list[TurnRecord] = field(default_factory=list)
    actions: list[SessionAction] = field(default_factory=list)
    acknowledged: dict[int, set[int]] = field(default_factory=dict)
    skipped: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.router: SessionRouter | None = None
        self.error: BaseException | None = None

    def key(self, user: int) -> str:
        return f"{self.key_prefix}:conv:{user}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drill-load", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def snapshot(self) -> list[TurnRecord]:
        with self._lock:
            return list(self.records)

    def record_action(self, action: SessionAction) -> None:
        with self._lock:
            self.actions.append(action)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by the drill, never swallowed
            self.error = exc

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.router = self.router_factory()
        busy: set[int] = set()
        turns = dict.fromkeys(range(self.profile.users), 0)
        limits = httpx.Limits(max_connections=self.profile.users, max_keepalive_connections=self.profile.users)
        async with httpx.AsyncClient(timeout=self.profile.request_timeout_s, limits=limits) as client:
            interval = 1.0 / self.profile.rate_rps
            next_tick = time.monotonic()
            tasks: set[asyncio.Task] = set()
            cursor = 0
            while not self._stop.is_set():
                idle = [u for u in (*range(cursor, self.profile.users), *range(cursor)) if u not in busy]
                if idle:
                    user = idle[0]
                    cursor = (user + 1) % self.profile.users
                    busy.add(user)
                    turns[user] += 1
                    task = asyncio.create_task(self._turn(client, user, turns[user]))
                    task.add_done_callback(lambda _t, u=user: busy.discard(u))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    self.skipped += 1
                next_tick += interval
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        await self.router.close()

    async def _turn(self, client: httpx.AsyncClient, user: int, turn: int) -> None:
        assert self.router is not None
        key = self.key(user)
        history = await self.router.history(key, self.profile.history_turns)
        messages = [{"role": "system", "content": "You are a terse assistant."}]
        for past in history:
            messages += [{"role": "user", "content": past["user"]}, {"role": "assistant", "content": past["assistant"]}]
        prompt = f"Turn {turn}: one word about {TOPICS[(user + turn) % len(TOPICS)]}."
        messages.append({"role": "user", "content": prompt})
        body = {"model": self.model, "messages": messages, "max_tokens": self.profile.max_tokens, "temperature": 0}
        sent = time.time()
        start = time.perf_counter()
        status: int | None = None
        backend = error = None
        reply = ""
        try:
            resp = await client.post(f"{self.gateway_url}/chat/completions", json=body)
            status, backend = resp.status_code, resp.headers.get(self.backend_header)
            if status == 200:
                reply = resp.json()["choices"][0]["message"]["content"] or ""
            else:
                error = resp.text[:200]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        record = TurnRecord(user, turn, sent, (time.perf_counter() - start) * 1000, status, backend, error)
        if record.ok:
            record.ack = await self.router.append(key, {"turn": turn, "user": prompt, "assistant": reply})
            if record.ack != "none":
                with self._lock:
                    self.acknowledged.setdefault(user, set()).add(turn)
        with self._lock:
            self.records.append(record)

    def missing_turns(self) -> tuple[int, list[str]]:
        """Acknowledged turns the current primary store lacks; run after ``stop``."""
        async def check() -> tuple[int, list[str]]:
            assert self.router is not None
            lost, detail = 0, []
            for user, acked in sorted(self.acknowledged.items()):
                stored = await self.router.stored_turns(self.key(user))
                if stored is None:
                    return -1, [f"{self.router.primary.name} unreachable: cannot count"]
                gone = sorted(acked - stored)
                lost += len(gone)
                if gone:
                    detail.append(f"user {user}: turns {gone}")
            await self.router.close()
            return lost, detail

        return asyncio.run(check())

    def cleanup(self) -> None:
        """Delete the drill's conversations (they expire after a day anyway)."""
        async def delete() -> None:
            assert self.router is not None
            try:
                await self.router._client(self.router.primary).delete(*(self.key(u) for u in range(self.profile.users)))
            except (aioredis.RedisError, OSError):
                pass
            await self.router.close()

        asyncio.run(delete())

    def records_as_dicts(self) -> list[dict]:
        return [asdict(r) for r in self.snapshot()]
