import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from deployments.stack.chaos_proxy import CONTROL_PATH, RUNNER_OPTIONS, ChaosProxy, ProxyFault


async def _upstream_app() -> web.Application:
    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "m"}]}, headers={"X-Upstream": "yes"})

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"echo": body["messages"][0]["content"]})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for n in range(3):
            await response.write(f"data: {n}\n\n".encode())
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/stream", stream)
    return app


Scenario = Callable[[aiohttp.ClientSession, str], Awaitable[None]]


def _run(scenario: Scenario) -> None:
    async def main() -> None:
        upstream = TestServer(await _upstream_app(), host="127.0.0.1")
        await upstream.start_server()
        proxy = TestServer(ChaosProxy(str(upstream.make_url(""))).app(), host="127.0.0.1")
        await proxy.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                await scenario(session, str(proxy.make_url("")).rstrip("/"))
        finally:
            await proxy.close()
            await upstream.close()

    asyncio.run(main())


async def _set(session: aiohttp.ClientSession, base: str, **fault: object) -> aiohttp.ClientResponse:
    return await session.put(base + CONTROL_PATH, json={"expires_at": time.time() + 30, **fault})


def test_without_a_fault_traffic_passes_through_untouched() -> None:
    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        async with session.get(base + "/v1/models") as resp:
            assert resp.status == 200 and resp.headers["X-Upstream"] == "yes"
            assert await resp.json() == {"data": [{"id": "m"}]}
        payload = {"messages": [{"role": "user", "content": "hi"}]}
        async with session.post(base + "/v1/chat/completions", json=payload) as resp:
            assert await resp.json() == {"echo": "hi"}
        async with session.get(base + "/v1/stream") as resp:
            assert await resp.text() == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
        async with session.get(base + CONTROL_PATH) as resp:
            assert await resp.json() is None

    _run(scenario)


def test_error_fault_makes_the_target_answer_its_status_until_cleared() -> None:
    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        assert (await _set(session, base, kind="error", status=503)).status == 200
        async with session.get(base + "/v1/models") as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        async with session.get(base + CONTROL_PATH) as resp:
            assert (await resp.json())["kind"] == "error"
        await session.delete(base + CONTROL_PATH)
        async with session.get(base + "/v1/models") as resp:
            assert resp.status == 200

    _run(scenario)


def test_a_fault_ends_by_itself_when_its_lease_expires() -> None:
    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        await session.put(base + CONTROL_PATH, json={"kind": "error", "status": 429, "expires_at": time.time() + 0.5})
        async with session.get(base + "/v1/models") as resp:
            assert resp.status == 429
        await asyncio.sleep(0.7)
        async with session.get(base + "/v1/models") as resp:
            assert resp.status == 200
        async with session.get(base + CONTROL_PATH) as resp:
            assert await resp.json() is None

    _run(scenario)


def test_slow_fault_delays_every_answer() -> None:
    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        await _set(session, base, kind="slow", latency_ms=300)
        started = time.monotonic()
        async with session.get(base + "/v1/models") as resp:
            assert resp.status == 200
        assert time.monotonic() - started >= 0.3  # the injected delay is a lower bound, never a limit

    _run(scenario)


def test_reset_fault_drops_the_connection() -> None:
    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        await _set(session, base, kind="reset")
        with pytest.raises(aiohttp.ClientError):
            async with session.get(base + "/v1/models") as resp:
                await resp.read()

    _run(scenario)


def test_control_route_refuses_faults_without_a_bounded_lease() -> None:
    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        past = await session.put(base + CONTROL_PATH, json={"kind": "error", "expires_at": time.time() - 1})
        assert past.status == 422 and "in the past" in await past.text()
        forever = await session.put(base + CONTROL_PATH, json={"kind": "error", "expires_at": time.time() + 10**6})
        assert forever.status == 422 and "at most" in await forever.text()
        async with session.get(base + "/v1/models") as resp:
            assert resp.status == 200  # nothing was injected

    _run(scenario)


def test_fraction_hits_only_some_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([0.1, 0.9, 0.2, 0.95])
    monkeypatch.setattr("deployments.stack.chaos_proxy.random.random", lambda: next(draws))

    async def scenario(session: aiohttp.ClientSession, base: str) -> None:
        await _set(session, base, kind="error", status=500, fraction=0.5)
        statuses = []
        for _ in range(4):
            async with session.get(base + "/v1/models") as resp:
                statuses.append(resp.status)
        assert statuses == [500, 200, 500, 200]

    _run(scenario)


def test_fault_model_validation() -> None:
    with pytest.raises(ValueError, match="status"):
        ProxyFault(kind="error", status=200, expires_at=time.time() + 5)
    assert ProxyFault(kind="slow", latency_ms=5, expires_at=time.time() + 5).active()


def test_a_lease_runs_on_the_monotonic_clock_once_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock stepping an hour either way after a fault was set changes nothing; the lease
    ends when its seconds have passed."""
    fault = ProxyFault(kind="error", expires_at=time.time() + 60)
    wall, mono = time.time(), time.monotonic()
    monkeypatch.setattr(time, "time", lambda: wall + 3600)
    assert fault.active()
    monkeypatch.setattr(time, "time", lambda: wall - 3600)
    monkeypatch.setattr(time, "monotonic", lambda: mono + 59)
    assert fault.active()
    monkeypatch.setattr(time, "monotonic", lambda: mono + 61)
    assert not fault.active()


def test_a_request_its_client_abandons_is_abandoned_upstream_too() -> None:
    """The gateway gives up on a hung server's request; the server must see that client go, or it
    generates the abandoned answer when it resumes (llama-cpp-python checks before generating)."""
    started, abandoned = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            abandoned.set()
            raise
        return web.json_response({})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", hang)
        upstream = TestServer(app, host="127.0.0.1")  # cancels a handler whose client left, as uvicorn tells
        await upstream.start_server()
        # The proxy runs as `main` runs it (aiohttp's TestServer would always cancel handlers).
        runner = web.AppRunner(ChaosProxy(str(upstream.make_url(""))).app(), **RUNNER_OPTIONS)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                request = asyncio.create_task(session.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={}))
                await asyncio.wait_for(started.wait(), 10)
                request.cancel()  # the client closes its connection, as HAProxy does on `timeout server`
                with pytest.raises(asyncio.CancelledError):
                    await request
                await asyncio.wait_for(abandoned.wait(), 10)
        finally:
            await runner.cleanup()
            await upstream.close()

    asyncio.run(main())
