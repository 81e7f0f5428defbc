"""A fault-injecting HTTP reverse proxy for tests: sits between an S3 client and a moto endpoint.

A seeded share of requests gets 503 SlowDown, 500 InternalError or a connection reset (the
socket closed without an answer) instead of being forwarded; a ``fail_when`` predicate fails every
matching request (e.g. listing pages after the first) with 500, to simulate a listing that breaks
midway. A ``hold_when`` predicate holds every matching request unanswered until ``release()``
(then answers it 503 without forwarding), so a test can stop a client at a known point.
``ignore_part_number`` drops ``partNumber`` from forwarded queries, as S3-compatible stores that
do not support part lookups do: a HEAD for part 1 then describes the whole object.
``corrupt_when`` flips one byte in the middle of every matching answer's body (a bit error on
the wire that TCP did not catch), for checks of what a client does with bytes that changed;
``corrupt_request_when`` does the same to a matching request's body on its way to the store.
``reset_when`` closes matching requests' connections without an answer; ``not_implemented_when``
answers them 501 NotImplemented, as stores without a feature (object tagging ...) do;
``deny_when`` answers them 403 AccessDenied, as a store does to credentials its policy does not
allow that request (e.g. keys that may read a bucket but not write it).
Every request is recorded in ``exchanges`` (method, path with query, headers, status, and the
answer's body for requests other than GET), so tests can read what went over the wire.
Runs its own event loop in a thread; ``stop()`` closes it.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import yarl
from aiohttp import web

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization", "host",
              "content-length"}


ACCESS_DENIED = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>'
    b"<Message>A header or query you provided implies functionality that is not implemented.</Message></Error>"
)


@dataclass
class Exchange:
    """One request as the proxy saw it, and what it answered."""

    method: str
    path: str  # with the query string, as sent
    headers: dict[str, str]
    status: int = 0
    body: bytes = field(default=b"", repr=False)  # the answer, for requests other than GET

    def query(self) -> dict[str, str]:
        _, _, qs = self.path.partition("?")
        return dict(p.split("=", 1) if "=" in p else (p, "") for p in qs.split("&") if p)


Predicate = Callable[[web.Request], bool]


class FaultProxy:
    def __init__(self, upstream: str, *, fault_rate: float = 0.0, seed: int = 7,
                 fail_when: Predicate | None = None, deny_access_key: str | None = None,
                 hold_when: Predicate | None = None, ignore_part_number: bool = False,
                 corrupt_when: Predicate | None = None, corrupt_request_when: Predicate | None = None,
                 reset_when: Predicate | None = None, not_implemented_when: Predicate | None = None,
                 deny_when: Predicate | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.deny_when = deny_when
        self.corrupt_request_when = corrupt_request_when
        self.reset_when = reset_when
        self.not_implemented_when = not_implemented_when
        self.exchanges: list[Exchange] = []
        self.ignore_part_number = ignore_part_number
        self.corrupt_when = corrupt_when
        self.hold_when = hold_when
        self._released: asyncio.Event | None = None
        self.fault_rate = fault_rate
        self.fail_when = fail_when
        self.deny_access_key = deny_access_key
        self._random = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def release(self) -> None:
        """Answer every held request (503, not forwarded) and hold no more."""
        self.hold_when = None
        if self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    def stop(self) -> None:
        self.release()  # a held request must not keep the server from closing

        async def close() -> None:
            if self._session:
                await self._session.close()
            if self._runner:
                await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self) -> None:
        self._released = asyncio.Event()
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        exchange = Exchange(request.method, request.raw_path, dict(request.headers))
        self.exchanges.append(exchange)
        response = await self._answer(request)
        exchange.status = response.status
        if request.method != "GET" and isinstance(response, web.Response) and response.body is not None:
            exchange.body = bytes(response.body)[:4096]  # type: ignore[arg-type]
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.counts["requests"] += 1
        if self.deny_access_key and f"Credential={self.deny_access_key}/" in request.headers.get("Authorization", ""):
            await request.read()
            self.counts["denied"] += 1
            body = b"<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist.</Message></Error>"
            return web.Response(status=403, body=body, content_type="application/xml")
        if self.deny_when is not None and self.deny_when(request):
            await request.read()
            self.counts["denied"] += 1
            return web.Response(status=403, body=ACCESS_DENIED, content_type="application/xml")
        if self.hold_when is not None and self.hold_when(request):
            await request.read()
            self.counts["held"] += 1
            await self._released.wait()  # type: ignore[union-attr]
            return web.Response(status=503, body=SLOW_DOWN, content_type="application/xml")
        if self.fail_when is not None and self.fail_when(request):
            await request.read()
            self.counts["forced_500"] += 1
            return web.Response(status=500, body=INTERNAL, content_type="application/xml")
        if self.reset_when is not None and self.reset_when(request):
            await request.read()
            self.counts["forced_reset"] += 1
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if self.not_implemented_when is not None and self.not_implemented_when(request):
            await request.read()
            self.counts["not_implemented"] += 1
            return web.Response(status=501, body=NOT_IMPLEMENTED, content_type="application/xml")
        roll = self._random.random()
        if roll < self.fault_rate:
            kind = self._random.choice(("slowdown", "internal", "reset"))
            self.counts[kind] += 1
            await request.read()
            if kind == "slowdown":
                return web.Response(status=503, body=SLOW_DOWN, content_type="application/xml")
            if kind == "internal":
                return web.Response(status=500, body=INTERNAL, content_type="application/xml")
            transport = request.transport
            if transport is not None:
                transport.abort()  # connection reset: no answer at all
            return web.Response(status=500)
        body = await request.read()
        if body and self.corrupt_request_when is not None and self.corrupt_request_when(request):
            flipped = bytearray(body)
            flipped[len(flipped) // 2] ^= 0xFF
            body = bytes(flipped)
            self.counts["request_corrupted"] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = request.headers.get("Host", "")
        path = request.raw_path
        if self.ignore_part_number and "partNumber=" in path:
            base, _, query = path.partition("?")
            kept = "&".join(p for p in query.split("&") if not p.startswith("partNumber="))
            path = base + (f"?{kept}" if kept else "")
            self.counts["part_number_ignored"] += 1
        async with self._session.request(  # type: ignore[union-attr]
            request.method, yarl.URL(self.upstream + path, encoded=True),
            headers=headers, data=body, allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            self.counts["forwarded"] += 1
            if request.method == "HEAD":  # keep the object's Content-Length; there is no body
                response = web.StreamResponse(status=upstream.status, headers=out_headers)
                response.content_length = int(upstream.headers.get("Content-Length", 0))
                await response.prepare(request)
                await response.write_eof()
                return response
            if payload and upstream.status == 200 and self.corrupt_when is not None and self.corrupt_when(request):
                flipped = bytearray(payload)
                flipped[len(flipped) // 2] ^= 0x40
                payload = bytes(flipped)
                self.counts["corrupted"] += 1
            return web.Response(status=upstream.status, body=payload, headers=out_headers)
