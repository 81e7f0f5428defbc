"""Resolve `name@label` for applications, serving a cached copy when the registry is down.

Like Langfuse's SDK fallback: every successful resolution is written to a local cache file; when
the registry cannot be reached the last copy is served, marked `cached=True` with the time it was
fetched. Bad input (an unknown prompt or label) is never answered from the cache.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from tasks.errors import ConfigurationError
from tasks.prompt_registry import PromptRegistry, PromptVersion, RegistryUnavailable


class ResolvedPrompt(BaseModel):
    ref: str
    version: PromptVersion
    cached: bool
    fetched_at: datetime


class PromptClient:
    def __init__(self, registry: PromptRegistry, cache_dir: str | Path) -> None:
        self.registry = registry
        self.cache_dir = Path(cache_dir)

    def _cache_file(self, ref: str) -> Path:
        return self.cache_dir / (re.sub(r"[^A-Za-z0-9._@-]", "_", ref) + ".json")

    def get(self, ref: str) -> ResolvedPrompt:
        try:
            version = self.registry.resolve(ref)
        except ConfigurationError:
            raise
        except Exception as exc:  # unreachable store: network, auth endpoint, timeouts
            path = self._cache_file(ref)
            if not path.exists():
                raise RegistryUnavailable(f"registry unreachable ({type(exc).__name__}: {exc}) and no cached "
                                          f"copy of {ref!r} in {self.cache_dir}") from exc
            resolved = ResolvedPrompt.model_validate_json(path.read_text())
            return resolved.model_copy(update={"cached": True})
        resolved = ResolvedPrompt(ref=ref, version=version, cached=False, fetched_at=datetime.now(timezone.utc))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self._cache_file(ref)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(resolved.model_dump(mode="json")))
        tmp.replace(path)
        return resolved
