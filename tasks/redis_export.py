"""A consistent export of a Redis session store, and loading it back.

Consistency: one Lua script (EVAL) reads every key's DUMP payload and PTTL. Redis runs a script
atomically, so the export is the database at one moment, with no writes in between, through any
client connection (managed Redis services that forbid SYNC/replication still allow EVAL). The cost
is that the server is blocked for the export's duration (~1 s per ~1M small keys), which suits a
session store; for a multi-GiB Redis, an RDB over the replication protocol (`redis-cli --rdb`) is
the better choice (docs/backup-format.md).
"""

from __future__ import annotations

import base64
import json
import time

import redis

from tasks.backup_errors import CorruptObject

EXPORT_FORMAT = "llmr-redis-export"

# Returns [server time (s, µs), key1, dump1, pttl1, key2, ...] in one atomic step.
_EXPORT_SCRIPT = """
local keys = redis.call('KEYS', '*')
local out = {redis.call('TIME')}
for _, k in ipairs(keys) do
  out[#out + 1] = k
  out[#out + 1] = redis.call('DUMP', k)
  out[#out + 1] = redis.call('PTTL', k)
end
return out
"""


def export_redis(client: redis.Redis, db: int = 0) -> bytes:
    """JSON lines: a header, then one line per key (DUMP payload and absolute expiry in ms)."""
    reply = client.eval(_EXPORT_SCRIPT, 0)
    seconds, micros = (int(x) for x in reply[0])
    now_ms = seconds * 1000 + micros // 1000
    lines = []
    count = 0
    for i in range(1, len(reply), 3):
        key, payload, pttl = reply[i], reply[i + 1], int(reply[i + 2])
        if payload is None:  # expired between KEYS and DUMP cannot happen inside a script, but be safe
            continue
        key = key.encode() if isinstance(key, str) else key
        payload = payload.encode("latin-1") if isinstance(payload, str) else payload
        lines.append(json.dumps({
            "key": base64.b64encode(key).decode(), "value": base64.b64encode(payload).decode(),
            "expire_at_ms": now_ms + pttl if pttl > 0 else None,
        }, separators=(",", ":")))
        count += 1
    header = json.dumps({"format": EXPORT_FORMAT, "version": 1, "exported_at_ms": now_ms, "db": db, "keys": count})
    return ("\n".join([header, *lines]) + "\n").encode()


def export_time_ms(data: bytes) -> int:
    return int(json.loads(data.split(b"\n", 1)[0])["exported_at_ms"])


def load_redis(client: redis.Redis, data: bytes, name: str = "redis export") -> int:
    """RESTORE every key with REPLACE and ABSTTL (keys keep their original expiry moment)."""
    lines = data.decode().splitlines()
    try:
        header = json.loads(lines[0])
        if header.get("format") != EXPORT_FORMAT or header.get("version") != 1:
            raise ValueError("unknown format")
    except (IndexError, ValueError):
        raise CorruptObject(f"{name}: not an {EXPORT_FORMAT} v1 file") from None
    now_ms = int(time.time() * 1000)
    restored = 0
    pipe = client.pipeline(transaction=False)
    for n, line in enumerate(lines[1:], start=2):
        try:
            doc = json.loads(line)
            key, value = base64.b64decode(doc["key"]), base64.b64decode(doc["value"])
        except (ValueError, KeyError):
            raise CorruptObject(f"{name}: line {n} does not parse") from None
        expire_at = doc.get("expire_at_ms")
        if expire_at is not None and expire_at <= now_ms:
            continue  # already expired at its source too
        if expire_at is None:
            pipe.restore(key, 0, value, replace=True)
        else:
            pipe.restore(key, expire_at, value, replace=True, absttl=True)
        restored += 1
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()
    if restored != header.get("keys") and not any(json.loads(x).get("expire_at_ms") for x in lines[1:]):
        raise CorruptObject(f"{name}: header says {header.get('keys')} keys, file holds {restored}")
    return restored
