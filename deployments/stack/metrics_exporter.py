"""Serves the health monitor's latest figures to Prometheus, and keeps a local alert inbox.

    python -m deployments.stack.metrics_exporter --listen 127.0.0.1:9190 --state-dir .state

``GET /metrics``         Prometheus text format, built from ``<state>/monitoring/latest.json``
                         (written by every health-check run) at each scrape.
``POST /notifications``  the default target of the platform's webhook notification block:
                         each message is appended to ``<state>/monitoring/notifications.jsonl``,
                         so a fresh `make demo` shows alerts without any external service.
``GET /notifications``   the messages received, newest last.

The launcher starts it like every other component (bound to loopback, stopped by PID).
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_NOTIFICATION_BYTES = 64 * 1024


def snapshot_path(state_dir: Path) -> Path:
    return state_dir / "monitoring" / "latest.json"


def inbox_path(state_dir: Path) -> Path:
    return state_dir / "monitoring" / "notifications.jsonl"


def make_handler(state_dir: Path) -> type[BaseHTTPRequestHandler]:
    from tasks.platform_status import MonitorSnapshot
    from tasks.prometheus_exposition import exposition

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] == "/metrics":
                self._send(200, exposition(MonitorSnapshot.load(snapshot_path(state_dir))), CONTENT_TYPE_LATEST)
            elif self.path == "/notifications":
                try:
                    body = inbox_path(state_dir).read_bytes()
                except FileNotFoundError:
                    body = b""
                self._send(200, body, "application/x-ndjson")
            elif self.path == "/":
                self._send(200, b"llm-resilience exporter: GET /metrics, POST|GET /notifications\n")
            else:
                self._send(404, b"not found\n")

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/notifications":
                self._send(404, b"not found\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_NOTIFICATION_BYTES:
                self._send(413, b"notification too large\n")
                return
            raw = self.rfile.read(length)
            try:
                message = json.loads(raw or b"null")
            except ValueError:
                message = raw.decode(errors="replace")
            path = inbox_path(state_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps({"received_at": time.time(), "message": message}) + "\n")
            self._send(200, b"ok\n")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet: scrapes every few seconds
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="host:port, loopback")
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), make_handler(args.state_dir.resolve()))
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
