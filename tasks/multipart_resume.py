"""Our own record of a multipart copy's completed parts, so an interrupted copy resumes.

S3's ListParts returns no part checksums, and a killed run cannot say which parts it verified:
each finished part is recorded here (part number, MD5, size) next to the upload id, keyed by the
destination store and key, and tied to the source ETag so a changed source starts over.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ResumeRecord:
    store_id: str
    key: str
    upload_id: str
    source_etag: str
    size: int
    part_size: int
    parts: dict[int, str] = field(default_factory=dict)  # part number -> MD5 hex of its bytes


class ResumeStore:
    """One JSON file per in-progress multipart copy under ``directory`` (atomic replace on save)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, store_id: str, key: str) -> Path:
        digest = hashlib.sha256(f"{store_id}\n{key}".encode()).hexdigest()[:40]
        return self.directory / f"{digest}.json"

    def load(self, store_id: str, key: str) -> ResumeRecord | None:
        path = self._path(store_id, key)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        data["parts"] = {int(k): v for k, v in data.get("parts", {}).items()}
        record = ResumeRecord(**data)
        return record if (record.store_id, record.key) == (store_id, key) else None

    def save(self, record: ResumeRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(record.store_id, record.key)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, path)

    def delete(self, store_id: str, key: str) -> None:
        self._path(store_id, key).unlink(missing_ok=True)
