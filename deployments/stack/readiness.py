"""Is a component ready to serve? Each check answers quickly and says what it saw."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from tasks.redis_retry import bounded_retry


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: str


def http_ok(url: str, *, timeout_s: float = 2.0, expect_json_key: str | None = None) -> Readiness:
    try:
        resp = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Readiness(False, f"GET {url}: {exc.__class__.__name__}")
    if resp.status_code != 200:
        return Readiness(False, f"GET {url}: HTTP {resp.status_code}")
    if expect_json_key is not None:
        try:
            if expect_json_key not in resp.json():
                return Readiness(False, f"GET {url}: no {expect_json_key!r} in answer")
        except ValueError:
            return Readiness(False, f"GET {url}: answer is not JSON")
    return Readiness(True, f"GET {url}: 200")


def llm_answers(base_url: str, model: str, *, timeout_s: float = 30.0) -> Readiness:
    """A one-token completion: a model server that lists its model may still be loading it, and
    its first generation is the slow one; paying it here keeps it out of every drill and test."""
    listed = http_ok(f"{base_url}/models", expect_json_key="data")
    if not listed.ready:
        return listed
    try:
        resp = httpx.post(f"{base_url}/chat/completions", timeout=timeout_s, json={
            "model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "ready?"}]})
    except httpx.HTTPError as exc:
        return Readiness(False, f"POST {base_url}/chat/completions: {exc.__class__.__name__}")
    if resp.status_code != 200:
        return Readiness(False, f"POST {base_url}/chat/completions: HTTP {resp.status_code}")
    return Readiness(True, f"{model} answers")


def postgres_accepting(host: str, port: int, *, timeout_s: float = 2.0) -> Readiness:
    """``pg_isready``: 0 only once the server accepts connections (not while starting or recovering)."""
    from deployments.stack.postgres_cluster import pg_bin

    try:
        proc = subprocess.run(
            [pg_bin("pg_isready"), "-h", host, "-p", str(port), "-t", str(int(max(1, timeout_s)))],
            capture_output=True, text=True, timeout=timeout_s + 2,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Readiness(False, f"pg_isready {host}:{port}: {exc.__class__.__name__}")
    return Readiness(proc.returncode == 0, proc.stdout.strip() or f"pg_isready exit {proc.returncode}")


def redis_ping(host: str, port: int, *, timeout_s: float = 2.0) -> Readiness:
    try:
        with redis.Redis(host=host, port=port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                         retry=bounded_retry()) as r:
            r.ping()
            role = r.info("replication").get("role")
    except redis.RedisError as exc:
        return Readiness(False, f"redis {host}:{port}: {exc.__class__.__name__}")
    return Readiness(True, f"PONG ({role})")


def haproxy_admin(socket_path: Path, *, timeout_s: float = 2.0) -> Readiness:
    try:
        answer = haproxy_command(socket_path, "show info", timeout_s=timeout_s)
    except OSError as exc:
        return Readiness(False, f"admin socket {socket_path}: {exc.__class__.__name__}")
    return Readiness("Name: HAProxy" in answer, "admin socket answers" if answer else "admin socket silent")


def haproxy_command(socket_path: Path, command: str, *, timeout_s: float = 2.0) -> str:
    """One command on HAProxy's runtime API (the admin socket); the answer as text."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(socket_path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def prefect_worker_online(api_url: str, pool: str, worker_name: str, *, timeout_s: float = 2.0) -> Readiness:
    url = f"{api_url}/work_pools/{pool}/workers/filter"
    try:
        resp = httpx.post(url, json={}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Readiness(False, f"POST {url}: {exc.__class__.__name__}")
    if resp.status_code != 200:
        return Readiness(False, f"work pool {pool!r}: HTTP {resp.status_code}")
    for worker in resp.json():
        if worker.get("name") == worker_name and worker.get("status") == "ONLINE":
            return Readiness(True, f"worker {worker_name} online in pool {pool}")
    return Readiness(False, f"worker {worker_name} not yet online in pool {pool}")
