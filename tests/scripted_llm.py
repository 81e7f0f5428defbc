"""A scripted OpenAI-compatible chat endpoint for tests and bench/prompts.

It exists for behaviour the real model cannot be asked for on cue: a prompt version that
regresses, 429 bursts, timeouts, a fixed answer delay. It speaks just enough HTTP/1.1
(keep-alive, Content-Length) on 127.0.0.1.

Answers: the first rule whose `match` substrings all occur in the request's messages decides
(`reply`, `status`, `delay_s`); without a rule, the answer is the text after the last
"Reply with " in the prompt (so a suite can say what it expects). Throttling: `burst_429`
makes `length` requests out of every `every` answer 429 with Retry-After.

In-process: `with ScriptedLLM(script) as server: server.base_url`; as a process (the bench):
`python -m tests.scripted_llm --port P --delay-s 0.05`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections import Counter
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScriptedLLM:
    def __init__(self, script: dict[str, Any] | None = None, port: int | None = None) -> None:
        self.script: dict[str, Any] = script or {}
        self.port = port or free_port()
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.prompts: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._rule_hits: Counter[int] = Counter()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset_counts(self) -> None:
        self.requests = 0
        self.by_status.clear()
        self.prompts.clear()

    # --- answering
    def decide(self, text: str) -> tuple[int, str, float]:
        self.requests += 1
        n = self.requests
        burst = self.script.get("burst_429")
        if burst and (n - 1) % burst["every"] < burst["length"]:
            return 429, "rate limited", 0.0
        for i, rule in enumerate(self.script.get("rules", [])):
            if all(m in text for m in rule.get("match", [])):
                self._rule_hits[i] += 1
                times = rule.get("times")
                if times is not None and self._rule_hits[i] > times:
                    continue
                return int(rule.get("status", 200)), str(rule.get("reply", "")), float(rule.get("delay_s", 0))
        reply = text.rsplit("Reply with ", 1)[1].strip() if "Reply with " in text else "ok"
        return 200, reply, float(self.script.get("delay_s", 0))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                status, payload, extra = 200, {}, ""
                if path.endswith("/models"):
                    payload = {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
                elif path.endswith("/chat/completions") and method == "POST":
                    req = json.loads(body or b"{}")
                    text = "\n".join(str(m.get("content", "")) for m in req.get("messages", []))
                    self.prompts.append(text)
                    status, reply, delay = self.decide(text)
                    if delay:
                        await asyncio.sleep(delay)
                    if status == 200:
                        payload = {"id": f"cmpl-{self.requests}", "object": "chat.completion", "created": int(time.time()),
                                   "model": req.get("model", "scripted"),
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": reply}}],
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                    else:
                        payload = {"error": {"message": reply or "scripted error", "type": "scripted"}}
                        if status == 429:
                            extra = "Retry-After: 0\r\n"
                else:
                    status, payload = 404, {"error": {"message": f"no route {path}"}}
                self.by_status[status] += 1
                data = json.dumps(payload).encode()
                reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests"}.get(status, "Error")
                writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(data)}\r\n{extra}Connection: keep-alive\r\n\r\n".encode() + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)
        async with self._server:
            await self._server.serve_forever()

    # --- in-process lifecycle
    def __enter__(self) -> ScriptedLLM:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="scripted-llm", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("scripted LLM did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            current = asyncio.current_task()
            handlers = [t for t in asyncio.all_tasks() if t is not current]
            for t in handlers:
                t.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        if self._loop and self._server:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)
        if self._loop:
            self._loop.close()

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=1800, help="exit by itself after this long")
    args = parser.parse_args()
    server = ScriptedLLM({"delay_s": args.delay_s}, port=args.port)

    async def bounded() -> None:
        try:
            await asyncio.wait_for(server.serve(), args.max_seconds)
        except asyncio.TimeoutError:
            pass

    asyncio.run(bounded())


if __name__ == "__main__":
    main()
