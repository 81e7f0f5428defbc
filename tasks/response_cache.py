"""Response cache of the prompt runner: one JSON file per call, keyed by everything that makes
the call what it is.

The key hashes the prompt version's content hash, the model, the request parameters, the case's
variables and the *sample index*: N samples of one case are N distinct calls (a cache keyed
without the index would serve one answer N times and hide flakiness), and a re-run with nothing
changed finds every answer here and calls nothing. Errors are never cached.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class CachedResponse(BaseModel):
    output: str
    latency_ms: float


def cache_key(*, version_hash: str, model: str, params: dict[str, Any], variables: dict[str, Any], sample: int) -> str:
    canonical = json.dumps(
        {"version": version_hash, "model": model, "params": params, "vars": variables, "sample": sample},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache:
    """Files under ``directory``/<2 hex>/<key>.json; written atomically (temp file + rename)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedResponse | None:
        try:
            return CachedResponse.model_validate_json(self._path(key).read_bytes())
        except (FileNotFoundError, ValueError):
            return None

    def put(self, key: str, response: CachedResponse) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(response)}")
        tmp.write_text(response.model_dump_json())
        tmp.replace(path)
