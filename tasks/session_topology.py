"""Which region's session store is the primary, and moving that role between regions.

Redis replication is one-way: region-b follows region-a (``replicaof``). A regional failover
promotes region-b (``REPLICAOF NO ONE``), accepting whatever it had received. Failback first
makes region-a follow region-b until both hold the same data, then swaps the roles while
writes are paused for a moment, so no acknowledged write is lost in the swap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from tasks.errors import LLMResilienceError
from tasks.redis_retry import bounded_retry


class SessionTopologyError(LLMResilienceError):
    """The session stores could not be put in the asked-for roles in time."""


@dataclass(frozen=True)
class RedisNode:
    name: str
    host: str
    port: int

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s, decode_responses=True, retry=bounded_retry())


def replication_info(node: RedisNode) -> dict[str, object]:
    return node.client().info("replication")


def is_primary(node: RedisNode) -> bool:
    return replication_info(node).get("role") == "master"


def promote(node: RedisNode) -> None:
    """Make ``node`` a writable primary with what it holds now (a replica keeps its data)."""
    node.client().execute_command("REPLICAOF", "NO", "ONE")


def follow(replica: RedisNode, primary: RedisNode) -> None:
    replica.client().execute_command("REPLICAOF", primary.host, str(primary.port))


def wait_in_sync(primary: RedisNode, replica: RedisNode, timeout_s: float = 30.0) -> float:
    """Wait until ``replica``'s link is up and it has applied every write ``primary`` acknowledged.

    Returns the seconds it took. The primary's own offset is the target: WAIT-free, so it also
    works while writes are paused.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    while time.monotonic() < deadline:
        p, r = replication_info(primary), replication_info(replica)
        if (r.get("role") == "slave" and r.get("master_link_status") == "up"
                and int(r.get("master_port", -1)) == primary.port
                and int(r.get("slave_repl_offset", -1)) >= int(p.get("master_repl_offset", 0))):
            return time.monotonic() - start
        time.sleep(0.05)
    raise SessionTopologyError(
        f"{replica.name} did not catch up with {primary.name} within {timeout_s:g} s "
        f"(link {replication_info(replica).get('master_link_status')!r})"
    )


def switchover(old_primary: RedisNode, new_primary: RedisNode, *, pause_ms: int = 2000,
               timeout_s: float = 30.0) -> float:
    """Swap roles with no acknowledged write lost; returns how long writes were paused (s).

    ``new_primary`` must already follow ``old_primary`` (see ``follow``).
    """
    wait_in_sync(old_primary, new_primary, timeout_s)
    old = old_primary.client()
    start = time.monotonic()
    old.execute_command("CLIENT", "PAUSE", str(pause_ms), "WRITE")
    try:
        wait_in_sync(old_primary, new_primary, pause_ms / 1000)
        promote(new_primary)
        follow(old_primary, new_primary)
    finally:
        old.execute_command("CLIENT", "UNPAUSE")
    return time.monotonic() - start
