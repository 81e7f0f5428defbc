"""A fault-injecting reverse proxy in front of one model server.

It passes traffic through untouched until a drill sets a fault on its control route; then the
*target itself* answers with errors, answers slowly, or drops connections, exactly as the gateway
and the clients would see a sick model server. Every fault carries an expiry (a lease): a drill
that is cancelled or SIGKILLed leaves nothing injected for longer than that.

    python -m deployments.stack.chaos_proxy --listen 127.0.0.1:8111 --upstream http://127.0.0.1:8101

Control route (same port): ``PUT /_llmr/fault`` with a ProxyFault JSON body, ``DELETE`` to clear,
``GET`` to read the active fault (``null`` when none).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Literal

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

CONTROL_PATH = "/_llmr/fault"
UNREACHABLE_PAUSE_S = 0.05
# A request its client gave up on (the gateway's `timeout server`) is dropped upstream too, as it
# would be without the proxy in between: llama-cpp-python skips a request whose client is gone
# before generating it. aiohttp does not cancel handlers by default; without this, a hung server
# that resumes would first generate every answer the gateway abandoned during the hang.
RUNNER_OPTIONS = {"handler_cancellation": True}
MAX_LEASE_S = 3600.0
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "content-length"}


class ProxyFault(BaseModel):
    """What the target does while the fault is active, and until when."""

    kind: Literal["error", "slow", "reset"]
    status: int = Field(default=503, ge=400, le=599, description="HTTP status answered by an `error` fault.")
    latency_ms: float = Field(default=0.0, ge=0, le=600_000, description="Delay added by a `slow` fault.")
    fraction: float = Field(default=1.0, gt=0, le=1, description="Share of requests the fault hits.")
    expires_at: float = Field(description="Unix time the fault ends by itself (the lease).")
    # The lease as a monotonic deadline, fixed on arrival: a step of the wall clock afterwards (this
    # VM's clock is stepped after a pause) must neither end a fault early nor keep it past its lease.
    _ends: float = PrivateAttr(default=0.0)

    @model_validator(mode="after")
    def _bounded_lease(self) -> ProxyFault:
        remaining = self.expires_at - time.time()
        if remaining <= 0:
            raise ValueError("expires_at is in the past: a fault must end in the future")
        if remaining > MAX_LEASE_S:
            raise ValueError(f"expires_at is {remaining:.0f} s away; a lease is at most {MAX_LEASE_S:.0f} s")
        self._ends = time.monotonic() + remaining
        return self

    def active(self) -> bool:
        return time.monotonic() < self._ends


class ChaosProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.fault: ProxyFault | None = None
        self._session: aiohttp.ClientSession | None = None

    def current_fault(self) -> ProxyFault | None:
        if self.fault is not None and not self.fault.active():
            self.fault = None  # the lease ran out
        return self.fault

    async def control(self, request: web.Request) -> web.Response:
        if request.method == "DELETE":
            self.fault = None
            return web.json_response(None)
        if request.method in {"PUT", "POST"}:
            try:
                self.fault = ProxyFault.model_validate_json(await request.read())
            except ValidationError as exc:
                return web.json_response({"error": exc.errors(include_url=False, include_input=False, include_context=False)}, status=422)
        fault = self.current_fault()
        return web.json_response(fault.model_dump() if fault else None)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        fault = self.current_fault()
        if fault is not None and random.random() < fault.fraction:
            if fault.kind == "error":
                return web.json_response(
                    {"error": {"message": f"injected fault: HTTP {fault.status}", "type": "llmr_chaos"}},
                    status=fault.status,
                    headers={"Retry-After": "1"} if fault.status in (429, 503) else None,
                )
            if fault.kind == "reset":
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError("injected connection reset")
            await asyncio.sleep(fault.latency_ms / 1000)
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
        try:
            async with self._session.request(
                request.method, self.upstream + request.rel_url.path_qs, data=body or None, headers=headers
            ) as upstream:
                response = web.StreamResponse(
                    status=upstream.status,
                    headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientConnectionError as exc:
            # A gateway talking to a dead server directly sees a refused connection and waits before
            # retrying (HAProxy: up to 1 s); answering 502 at once would let its retries land on
            # this server again before its checks have marked it down. A short pause keeps
            # the proxy as slow as a refused connection at most, not faster.
            await asyncio.sleep(UNREACHABLE_PAUSE_S)
            return web.json_response({"error": {"message": f"upstream unreachable: {exc}"}}, status=502)

    async def _open(self, _app: web.Application) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=2))

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", CONTROL_PATH, self.control)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, help="host:port to bind (loopback)")
    parser.add_argument("--upstream", required=True, help="URL of the model server")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    web.run_app(ChaosProxy(args.upstream).app(), host=host, port=int(port), print=None, access_log=None,
                **RUNNER_OPTIONS)


if __name__ == "__main__":
    main()
